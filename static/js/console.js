/* The VNC console page: noVNC (vendored, ES modules) over the panel's ticketed proxy socket.
 *
 * Each connect asks the API for a new ticket (single use, 30 s) and opens the socket
 * with it; reconnect does the same. Offers scaling, full screen, Ctrl-Alt-Del and typing
 * pasted text as keystrokes. */
import RFB from "../vendor/novnc/core/rfb.js";
import KeyTable from "../vendor/novnc/core/input/keysym.js";
import keysyms from "../vendor/novnc/core/input/keysymdef.js";

const root = document.querySelector('[data-console="vnc"]');
const screen = root.querySelector("[data-console-screen]");
const statusEl = root.querySelector("[data-console-status]");
const scaleBox = root.querySelector("[data-console-scale]");
const cadButton = root.querySelector("[data-console-cad]");
const pasteForm = root.querySelector("[data-console-paste]");
const pasteText = root.querySelector("[data-console-paste-text]");
const pasteButton = root.querySelector("[data-console-paste-send]");
const PASTE_MAX = 4096;
// Characters a US keyboard types with Shift: sent with Shift held, since the server maps
// each keysym to a key and does not add the modifier itself.
const SHIFTED = "ABCDEFGHIJKLMNOPQRSTUVWXYZ~!@#$%^&*()_+{}|:\"<>?";

let rfb = null;
let attempt = 0;

function setState(state, text, kind) {
  root.dataset.state = state;
  statusEl.textContent = text;
  statusEl.dataset.kind = kind || "";
  const connected = state === "connected";
  cadButton.disabled = !connected;
  pasteButton.disabled = !connected;
}

function socketUrl(path) {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return scheme + "//" + window.location.host + path;
}

async function ticket() {
  const answer = await window.CloudPanel.post(root.dataset.ticketUrl);
  let body = {};
  try { body = await answer.json(); } catch (e) { /* not JSON: keep the status */ }
  if (!answer.ok) throw new Error(body.detail || "The panel refused a console ticket (" + answer.status + ").");
  return body;
}

async function connect() {
  const mine = ++attempt;
  if (rfb) {
    const old = rfb;
    rfb = null;
    old.disconnect();
  }
  setState("connecting", "Connecting…");
  let grant;
  try {
    grant = await ticket();
  } catch (error) {
    if (mine === attempt) setState("error", error.message, "error");
    return;
  }
  if (mine !== attempt) return;
  const client = new RFB(screen, socketUrl(grant.path), { wsProtocols: ["binary"], shared: true });
  rfb = client;
  client.scaleViewport = scaleBox.checked;
  client.clipViewport = false;
  client.resizeSession = false;
  client.focusOnClick = true;
  client.background = "#000";
  client.addEventListener("connect", () => {
    if (client === rfb) setState("connected", "Connected", "ok");
  });
  client.addEventListener("desktopname", (event) => {
    if (client === rfb) statusEl.title = event.detail.name;
  });
  client.addEventListener("disconnect", (event) => {
    if (client !== rfb) return;
    rfb = null;
    if (event.detail.clean) setState("disconnected", "Disconnected. Reconnect to open the console again.");
    else setState("error", "The console connection was closed or refused. Reconnect to try again.", "error");
  });
  client.addEventListener("securityfailure", (event) => {
    if (client === rfb) setState("error", "The VNC server refused us: " + (event.detail.reason || event.detail.status), "error");
  });
  window.cloudpanelConsole = client; // for people debugging in the browser (and tests)
}

function keysymFor(ch) {
  if (ch === "\n") return KeyTable.XK_Return;
  if (ch === "\t") return KeyTable.XK_Tab;
  if (ch === "\b") return KeyTable.XK_BackSpace;
  return keysyms.lookup(ch.codePointAt(0));
}

function typeText(text) {
  if (!rfb) return;
  const chars = Array.from(text.replace(/\r\n?/g, "\n")).slice(0, PASTE_MAX);
  for (const ch of chars) {
    const keysym = keysymFor(ch);
    if (!keysym) continue;
    const shift = SHIFTED.indexOf(ch) !== -1;
    if (shift) rfb.sendKey(KeyTable.XK_Shift_L, "ShiftLeft", true);
    rfb.sendKey(keysym, null);
    if (shift) rfb.sendKey(KeyTable.XK_Shift_L, "ShiftLeft", false);
  }
}

scaleBox.addEventListener("change", () => { if (rfb) rfb.scaleViewport = scaleBox.checked; });
cadButton.addEventListener("click", () => { if (rfb) { rfb.sendCtrlAltDel(); rfb.focus(); } });
root.querySelector("[data-console-reconnect]").addEventListener("click", connect);
root.querySelector("[data-console-fullscreen]").addEventListener("click", () => {
  if (document.fullscreenElement) document.exitFullscreen();
  else screen.requestFullscreen().catch(() => setState(root.dataset.state, "Full screen is not allowed here.", "error"));
});
pasteForm.addEventListener("submit", (event) => {
  event.preventDefault();
  typeText(pasteText.value);
  pasteText.value = "";
  if (rfb) rfb.focus();
});

connect();
