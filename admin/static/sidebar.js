/* The sidebar's bridge to the WeCom client: sign the page (wx.config with the corp's ticket, wx.agentConfig
   with the app's — WeCom doc 90506), ask what is in front of the member, send chosen content with
   sendChatMessage, and record what was sent. No framework: WeCom's webview, plain DOM. */
(function () {
  'use strict';

  var body = document.body;

  function status(text, bad) {
    var el = document.getElementById('sdk-status');
    if (!el) { return; }
    el.hidden = !text;
    el.textContent = text || '';
    el.className = bad ? 'status bad' : 'status';
  }

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute('content') : '';
  }

  function asJson(response) {
    return response.json().catch(function () { return {}; }).then(function (data) {
      if (!response.ok) { throw new Error(data.error || ('HTTP ' + response.status)); }
      return data;
    });
  }

  function getJson(url) {
    return fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } }).then(asJson);
  }

  function postJson(url, data) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { Accept: 'application/json', 'Content-Type': 'application/json', 'X-CSRFToken': csrf() },
      body: JSON.stringify(data || {})
    }).then(asJson);
  }

  function apis() {
    return (body.getAttribute('data-apis') || '').split(/\s+/).filter(Boolean);
  }

  function reason(res) {
    return (res && (res.errMsg || res.err_msg)) || '';
  }

  /* Resolves once the client has accepted both signatures; rejects with WeCom's words otherwise. */
  function configure() {
    if (!window.wx) {
      return Promise.reject(new Error('未能加载企业微信 JS-SDK，请在企业微信中打开'));
    }
    var url = window.location.href.split('#')[0];
    return getJson(body.getAttribute('data-jsapi') + '?url=' + encodeURIComponent(url)).then(function (cfg) {
      return new Promise(function (resolve, reject) {
        var list = apis();
        window.wx.error(function (res) { reject(new Error('企业微信拒绝了页面签名：' + reason(res))); });
        window.wx.ready(function () {
          window.wx.agentConfig({
            corpid: cfg.agentConfig.corpid,
            agentid: cfg.agentConfig.agentid,
            timestamp: cfg.agentConfig.timestamp,
            nonceStr: cfg.agentConfig.nonceStr,
            signature: cfg.agentConfig.signature,
            jsApiList: list,
            success: function () { resolve(); },
            fail: function (res) { reject(new Error('企业微信拒绝了应用签名：' + reason(res))); }
          });
        });
        window.wx.config({
          beta: true,
          debug: false,
          appId: cfg.config.corpid,
          timestamp: cfg.config.timestamp,
          nonceStr: cfg.config.nonceStr,
          signature: cfg.config.signature,
          jsApiList: list
        });
      });
    });
  }

  function invoke(name, args) {
    return new Promise(function (resolve, reject) {
      window.wx.invoke(name, args || {}, function (res) {
        if (res && res.err_msg === name + ':ok') { resolve(res); } else { reject(new Error(reason(res) || name)); }
      });
    });
  }

  var ready = configure();
  ready.catch(function (err) { status(err.message, true); });

  /* The entry page: go to the customer or group in front of the member, or the home. */
  var entry = document.getElementById('entry');
  if (entry) {
    ready.then(function () { return invoke('getContext'); }).then(function (ctx) {
      if (ctx.entry === 'single_chat_tools' || ctx.entry === 'contact_profile') {
        return invoke('getCurExternalContact').then(function (res) {
          window.location.replace(entry.getAttribute('data-customer').replace('_ID_', encodeURIComponent(res.userId)));
        });
      }
      if (ctx.entry === 'group_chat_tools') {
        return invoke('getCurExternalChat').then(function (res) {
          window.location.replace(entry.getAttribute('data-group').replace('_ID_', encodeURIComponent(res.chatId)));
        });
      }
      window.location.replace(entry.getAttribute('data-home'));
    }).catch(function (err) { status(err.message, true); });
  }

  /* Content: ask Siyu for the message (it uploads media to WeCom as needed), send it, record the send. */
  function sendOnce(messageUrl, extra, fresh) {
    return postJson(messageUrl, fresh ? Object.assign({ fresh: true }, extra) : extra).then(function (prepared) {
      return invoke('sendChatMessage', prepared.message).then(function () { return prepared; });
    });
  }

  function send(messageUrl, extra) {
    status('正在发送……', false);
    return ready.then(function () {
      return sendOnce(messageUrl, extra, false).catch(function (err) {
        // A media id WeCom no longer knows (40007, or past its 3 days): upload the file again, once.
        if (/media/i.test(err.message)) { return sendOnce(messageUrl, extra, true); }
        throw err;
      });
    }).then(function (prepared) { return postJson(prepared.record, extra); })
      .then(function () { status('已发送', false); })
      .catch(function (err) { status('发送失败：' + err.message, true); });
  }

  document.addEventListener('click', function (event) {
    var button = event.target.closest ? event.target.closest('[data-send]') : null;
    if (!button) { return; }
    event.preventDefault();
    var context = document.querySelector('[data-external-userid], [data-chat-id]');
    var extra = {};
    if (context && context.getAttribute('data-external-userid')) { extra.external_userid = context.getAttribute('data-external-userid'); }
    if (context && context.getAttribute('data-chat-id')) { extra.chat_id = context.getAttribute('data-chat-id'); }
    send(button.getAttribute('data-send'), extra);
  });

  window.SiyuSidebar = { ready: ready, invoke: invoke, send: send, status: status };
}());
