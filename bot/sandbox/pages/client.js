// The sandbox's WeCom client: answers the JS-SDK stand-in (/sandbox/jssdk.js) running in the framed sidebar.
//
// Protocol (window.postMessage, both ways checked by origin and source):
//   child -> parent, to the sandbox's origin:
//     {type: "siyu-jssdk", id, page, api: "config" | "agentConfig" | "invoke", url, args}
//   parent -> child, to the framed page's origin:
//     {type: "siyu-jssdk", id, result}
// ``page`` is a random id per loaded document: a new page must call agentConfig again, as in WeCom.
(function () {
  "use strict";
  var context = JSON.parse(document.getElementById("client-context").textContent);
  // The authorize page, framed here on its way to the sidebar, reads the chosen member from this.
  window.SANDBOX_CLIENT = { member: context.userid };
  var frame = document.getElementById("sidebar");
  var log = document.getElementById("send-log");
  var agentConfigured = {}; // page id -> the jsApiList its successful agentConfig named

  function post(path, body) {
    return fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }).then(function (res) {
      return res.json();
    });
  }

  // WeCom checks the page against the app's trusted domain before its signature: here, the framed origin.
  function sameOrigin(url, origin) {
    return typeof url === "string" && (url === origin || url.indexOf(origin + "/") === 0);
  }

  function verify(api, url, args) {
    return post("/sandbox/jssdk/verify", {
      api: api,
      url: url,
      corpid: String(args.corpid || args.appId || ""),
      agentid: String(args.agentid || ""),
      timestamp: String(args.timestamp || ""),
      nonceStr: String(args.nonceStr || ""),
      signature: String(args.signature || ""),
    });
  }

  function configure(api, message, origin) {
    var args = message.args || {};
    if (!sameOrigin(message.url, origin)) {
      return Promise.resolve({ errMsg: api + ":fail not match any reliable domain", errCode: 80001 });
    }
    return verify(api, message.url, args).then(function (answer) {
      if (answer.errcode === 0) {
        if (api === "agentConfig") {
          agentConfigured[message.page] = Array.isArray(args.jsApiList) ? args.jsApiList : [];
        }
        return { errMsg: api + ":ok" };
      }
      if (api === "config") {
        return { errMsg: "config:fail " + answer.errmsg, errCode: answer.errcode };
      }
      return { errMsg: "agentConfig:fail", errCode: answer.errcode };
    });
  }

  function fail(name, reason) {
    return Promise.resolve({ err_msg: name + ":fail " + reason });
  }

  function invoke(message) {
    var name = String((message.args || {}).name || "");
    var args = (message.args || {}).args || {};
    var allowed = agentConfigured[message.page];
    if (!allowed || allowed.indexOf(name) < 0) return fail(name, "no permission");
    var entry = context.entry;
    if (name === "getContext") return Promise.resolve({ err_msg: "getContext:ok", entry: entry });
    if (name === "getCurExternalContact") {
      if (!context.external_userid) return fail(name, "without context of external contact");
      return Promise.resolve({ err_msg: "getCurExternalContact:ok", userId: context.external_userid });
    }
    if (name === "getCurExternalChat") {
      if (!context.chat_id) return fail(name, "without context of external chat");
      return Promise.resolve({ err_msg: "getCurExternalChat:ok", chatId: context.chat_id });
    }
    if (name === "sendChatMessage") {
      return post("/sandbox/chat-sends", {
        userid: context.userid,
        entry: entry,
        external_userid: context.external_userid,
        chat_id: context.chat_id,
        payload: args,
      }).then(function (answer) {
        show(args, answer);
        return { err_msg: answer.err_msg };
      });
    }
    return fail(name, "not supported by the sandbox");
  }

  function show(args, answer) {
    var item = document.createElement("li");
    var ok = answer.err_msg === "sendChatMessage:ok";
    if (!ok) item.className = "failed";
    var meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = new Date().toLocaleTimeString() + " · " + (args.msgtype || "?") + " · " + answer.err_msg;
    var body = document.createElement("pre");
    body.textContent = JSON.stringify(args, null, 2);
    item.appendChild(meta);
    item.appendChild(body);
    log.insertBefore(item, log.firstChild);
  }

  window.addEventListener("message", function (event) {
    // Only the framed sidebar's own origin, and only from the frame itself.
    if (event.source !== frame.contentWindow || event.origin !== context.frame_origin) return;
    var message = event.data;
    if (!message || message.type !== "siyu-jssdk") return;
    var answering;
    if (message.api === "config" || message.api === "agentConfig") {
      answering = configure(message.api, message, event.origin);
    } else if (message.api === "invoke") {
      answering = invoke(message);
    } else {
      return;
    }
    answering
      .catch(function (error) {
        // The sandbox server did not answer: the call fails as a client without network would.
        if (message.api !== "invoke") return { errMsg: message.api + ":fail " + error };
        return { err_msg: String((message.args || {}).name) + ":fail " + error };
      })
      .then(function (result) {
        event.source.postMessage({ type: "siyu-jssdk", id: message.id, result: result }, event.origin);
      });
  });
})();
