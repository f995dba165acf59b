// The desktop viewer: noVNC's RFB against ASCI's proxy. Each (re)connect fetches a fresh single-use token
// with the login's CSRF token; the token goes in the WebSocket sub-protocol header, never in a URL.
import { call } from "./common.js";

// noVNC is imported here, not above, so the first token is asked for while its modules still load.
const novnc = document.querySelector('meta[name="asci-novnc"]').content;
const loadingRFB = import(`${novnc}core/rfb.js`).then((module) => module.default);
const session = document.querySelector('meta[name="asci-session"]').content;
const screen = document.getElementById("screen");
const statusLine = document.getElementById("status");
const clipboard = document.getElementById("clipboard");
const MAX_DELAY_MS = 30000;
let rfb = null;
let failures = 0;
let ended = false;

function status(text) { statusLine.textContent = text; }

function retryLater() {
  if (ended) return;
  failures += 1;
  const delay = Math.min(MAX_DELAY_MS, 1000 * 2 ** Math.min(failures - 1, 5));
  status(`disconnected; reconnecting in ${Math.round(delay / 1000)} s…`);
  setTimeout(connect, delay);
}

async function connect() {
  status("connecting…");
  let grant;
  try {
    grant = await call("POST", `/web/api/sessions/${encodeURIComponent(session)}/connect`);
  } catch (e) {
    status(e.message);
    // A session that is gone or not ready will not come back by retrying fast.
    if (/not ready|no session|stopped/.test(e.message)) { ended = true; return; }
    retryLater();
    return;
  }
  let RFB;
  try {
    RFB = await loadingRFB;
  } catch (e) {
    ended = true;
    status("the viewer could not load; reload the page");
    return;
  }
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  rfb = new RFB(screen, `${scheme}//${window.location.host}${grant.websocket}`,
                { wsProtocols: [`asci-token.${grant.token}`] });
  rfb.scaleViewport = true;
  rfb.resizeSession = true;
  rfb.addEventListener("connect", () => { failures = 0; status("connected"); });
  rfb.addEventListener("disconnect", () => { rfb = null; retryLater(); });
  rfb.addEventListener("clipboard", (event) => { clipboard.value = event.detail.text; });
}

document.getElementById("clipboard-toggle").addEventListener("click", () => {
  const panel = document.getElementById("clipboard-panel");
  panel.hidden = !panel.hidden;
});
document.getElementById("clipboard-send").addEventListener("click", () => {
  if (rfb) rfb.clipboardPasteFrom(clipboard.value);
});

connect();
