/* The serial console page: xterm.js (vendored) over the panel's ticketed serial socket.
 *
 * The guest's bytes arrive as binary frames and go to the terminal as they are (it decodes
 * UTF-8); what is typed goes back as binary frames. Each connect asks for a new ticket. */
(function () {
  "use strict";

  var root = document.querySelector('[data-console="serial"]');
  var statusEl = root.querySelector("[data-console-status]");
  var screen = root.querySelector("[data-console-screen]");
  var pasteForm = root.querySelector("[data-console-paste]");
  var pasteText = root.querySelector("[data-console-paste-text]");
  var pasteButton = root.querySelector("[data-console-paste-send]");
  var encoder = new TextEncoder();
  var term = new window.Terminal({
    cursorBlink: true,
    scrollback: 5000,
    fontFamily: getComputedStyle(document.body).getPropertyValue("--mono") || "monospace",
    fontSize: 14,
    theme: { background: "#000000" }
  });
  var fit = new window.FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(screen);
  fit.fit();
  window.addEventListener("resize", function () { fit.fit(); });
  document.addEventListener("fullscreenchange", function () { fit.fit(); });

  var socket = null;
  var attempt = 0;

  function setState(state, text, kind) {
    root.dataset.state = state;
    statusEl.textContent = text;
    statusEl.dataset.kind = kind || "";
    pasteButton.disabled = state !== "connected";
  }

  function socketUrl(path) {
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + path;
  }

  function send(text) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(text));
  }

  function connect() {
    var mine = ++attempt;
    if (socket) {
      var old = socket;
      socket = null;
      old.close();
    }
    setState("connecting", "Connecting…");
    window.CloudPanel.post(root.dataset.ticketUrl).then(function (answer) {
      return answer.json().catch(function () { return {}; }).then(function (body) {
        if (!answer.ok) throw new Error(body.detail || "The panel refused a console ticket (" + answer.status + ").");
        return body;
      });
    }).then(function (grant) {
      if (mine !== attempt) return;
      var ws = new WebSocket(socketUrl(grant.serial_path), ["binary"]);
      ws.binaryType = "arraybuffer";
      socket = ws;
      ws.onopen = function () {
        if (ws !== socket) return;
        setState("connected", "Connected", "ok");
        term.focus();
      };
      ws.onmessage = function (event) {
        if (typeof event.data === "string") term.write(event.data);
        else term.write(new Uint8Array(event.data));
      };
      ws.onclose = function (event) {
        if (ws !== socket) return;
        socket = null;
        if (event.code === 1000) setState("disconnected", "Disconnected (the console was closed, or opened elsewhere). Reconnect to open it again.");
        else setState("error", "The console connection was closed or refused. Reconnect to try again.", "error");
      };
    }).catch(function (error) {
      if (mine === attempt) setState("error", error.message, "error");
    });
  }

  term.onData(send);
  term.onBinary(function (data) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    var bytes = new Uint8Array(data.length);
    for (var i = 0; i < data.length; i++) bytes[i] = data.charCodeAt(i) & 255;
    socket.send(bytes);
  });
  root.querySelector("[data-console-reconnect]").addEventListener("click", connect);
  root.querySelector("[data-console-fullscreen]").addEventListener("click", function () {
    if (document.fullscreenElement) document.exitFullscreen();
    else screen.requestFullscreen().catch(function () {});
  });
  pasteForm.addEventListener("submit", function (event) {
    event.preventDefault();
    send(pasteText.value.replace(/\r?\n/g, "\r"));
    pasteText.value = "";
    term.focus();
  });

  window.cloudpanelSerial = term; // for people debugging in the browser (and tests)
  connect();
})();
