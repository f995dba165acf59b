// The desktops page: environments to start, the user's sessions with live state, start / connect / stop.
import { call, el } from "./common.js";

const errorBox = document.getElementById("error");
const environmentsList = document.getElementById("environments");
const sessionsList = document.getElementById("sessions");
const noSessions = document.getElementById("no-sessions");
const POLL_MS = 2000;
const busy = new Set();

function showError(message) { errorBox.textContent = message || ""; }

async function act(key, work) {
  if (busy.has(key)) return;
  busy.add(key);
  showError("");
  try {
    await work();
  } catch (e) {
    showError(e.message);
  } finally {
    busy.delete(key);
    refresh();
  }
}

function environmentCard(env) {
  const details = `${env.cpus} CPU · ${env.memory}` + (env.gpus ? ` · ${env.gpus} GPU` : "");
  return el("li", { class: "card", "data-environment": env.name },
    el("span", { class: "title", text: env.title }),
    el("span", { class: "quiet", text: details }),
    el("button", {
      type: "button", text: "Start",
      onclick: () => act(`start:${env.name}`, () => call("POST", "/web/api/sessions", { environment: env.name })),
    }));
}

function sessionCard(session) {
  const card = el("li", { class: `card state-${session.state}`, "data-session": session.id },
    el("span", { class: "icon", "aria-hidden": "true", text: "🖥" }),
    el("span", { class: "title", text: session.title }),
    el("span", { class: "state", text: session.state }));
  if (session.reason) card.append(el("span", { class: "quiet", text: session.reason }));
  const actions = el("span", { class: "actions" });
  if (session.state === "ready") {
    actions.append(el("a", { class: "button", href: `/web/viewer/${encodeURIComponent(session.id)}`,
                             target: "_blank", rel: "noopener", text: "Connect" }));
  }
  if (session.state !== "stopping") {
    actions.append(el("button", {
      type: "button", text: "Stop",
      onclick: () => act(`stop:${session.id}`, () => call("DELETE", `/web/api/sessions/${encodeURIComponent(session.id)}`)),
    }));
  }
  card.append(actions);
  return card;
}

let shownEnvironments = "";

async function refresh() {
  let data;
  try {
    data = await call("GET", "/web/api/overview");
  } catch (e) {
    showError(e.message);
    return;
  }
  const envKey = JSON.stringify(data.environments);
  if (envKey !== shownEnvironments) {
    shownEnvironments = envKey;
    environmentsList.replaceChildren(...data.environments.map(environmentCard));
    if (!data.environments.length) environmentsList.append(el("li", { class: "quiet", text: "No environments are open to you." }));
  }
  sessionsList.replaceChildren(...data.sessions.map(sessionCard));
  noSessions.hidden = data.sessions.length > 0;
}

document.getElementById("logout").addEventListener("click", async () => {
  try { await call("POST", "/web/logout"); } catch (e) { /* logged out either way */ }
  window.location.assign("/login");
});

refresh();
setInterval(refresh, POLL_MS);
