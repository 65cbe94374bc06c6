// The sandbox's stand-in for WeCom's JS-SDK (jweixin 1.2.0, WeCom doc 90547): the global ``wx`` a page inside
// the WeCom client calls. Here the "client" is the sandbox's client page (/sandbox/client) framing this page:
// every call is a postMessage to it, answered as WeCom answers (wx.config / wx.agentConfig signatures checked
// against the tickets the sandbox issued; wx.invoke results shaped like WeCom's, e.g.
// {err_msg: "getContext:ok", entry: "single_chat_tools"}). Opened anywhere else, config and agentConfig fail
// as they do outside WeCom.
(function () {
  "use strict";
  var SANDBOX_ORIGIN = __SANDBOX_ORIGIN__;
  var OUTSIDE = "not in wecom client";
  var WAIT_MS = 5000; // a parent that is not the client page never answers
  var page = Math.random().toString(36).slice(2) + Date.now().toString(36);
  var framed = window.parent !== window;
  var unanswered = false; // the frame's parent is not the client page: stop asking it
  var pending = {};
  var sequence = 0;
  var configured = null; // null: not yet; else the answer of wx.config
  var readyCallbacks = [];
  var errorCallbacks = [];

  window.addEventListener("message", function (event) {
    // Only the client page that frames this one, from the sandbox's origin.
    if (event.origin !== SANDBOX_ORIGIN || event.source !== window.parent) return;
    var message = event.data;
    if (!message || message.type !== "siyu-jssdk" || !pending[message.id]) return;
    var done = pending[message.id];
    delete pending[message.id];
    done(message.result);
  });

  // Only data crosses to the client: callbacks stay here.
  function plain(value) {
    return value === undefined ? {} : JSON.parse(JSON.stringify(value));
  }

  function ask(api, args, outside, done) {
    if (!framed || unanswered) {
      setTimeout(function () { done(outside); }, 0);
      return;
    }
    var id = ++sequence;
    var timer = setTimeout(function () {
      delete pending[id];
      unanswered = true;
      done(outside);
    }, WAIT_MS);
    pending[id] = function (result) {
      clearTimeout(timer);
      done(result);
    };
    var url = window.location.href.split("#")[0]; // WeCom signs the URL without its fragment
    window.parent.postMessage(
      { type: "siyu-jssdk", id: id, page: page, api: api, url: url, args: plain(args) },
      SANDBOX_ORIGIN
    );
  }

  function call(fn, value) {
    if (typeof fn === "function") fn(value);
  }

  function ok(result, api) {
    return !!result && result.errMsg === api + ":ok";
  }

  var wx = {
    sandbox: true,
    config: function (options) {
      var opts = options || {};
      var args = {
        appId: opts.appId, corpid: opts.corpid, timestamp: opts.timestamp, nonceStr: opts.nonceStr,
        signature: opts.signature, jsApiList: opts.jsApiList, beta: opts.beta,
      };
      ask("config", args, { errMsg: "config:fail " + OUTSIDE }, function (result) {
        configured = result;
        var callbacks = ok(result, "config") ? readyCallbacks : errorCallbacks;
        readyCallbacks = [];
        errorCallbacks = [];
        callbacks.forEach(function (fn) { call(fn, ok(result, "config") ? undefined : result); });
      });
    },
    ready: function (fn) {
      if (configured && ok(configured, "config")) setTimeout(fn, 0);
      else if (!configured) readyCallbacks.push(fn);
    },
    error: function (fn) {
      if (configured && !ok(configured, "config")) setTimeout(function () { fn(configured); }, 0);
      else if (!configured) errorCallbacks.push(fn);
    },
    agentConfig: function (options) {
      var opts = options || {};
      var args = {
        corpid: opts.corpid, agentid: opts.agentid, timestamp: opts.timestamp, nonceStr: opts.nonceStr,
        signature: opts.signature, jsApiList: opts.jsApiList,
      };
      ask("agentConfig", args, { errMsg: "agentConfig:fail " + OUTSIDE }, function (result) {
        call(ok(result, "agentConfig") ? opts.success : opts.fail, result);
        call(opts.complete, result);
      });
    },
    invoke: function (name, args, callback) {
      var outside = { err_msg: name + ":fail " + OUTSIDE };
      ask("invoke", { name: name, args: args || {} }, outside, function (result) {
        call(callback, result);
      });
    },
  };
  window.wx = wx;
  window.jWeixin = wx;
})();
