// Petrel dashboard: a hash-routed single page of vanilla ES modules.
// Every page calls the same JSON API as apps do, authenticated by the
// session cookie; unsafe requests carry the session's CSRF token.
// User data only ever reaches the DOM as text (h() makes text nodes;
// nothing here parses a string as HTML).
import { catalogs } from "./i18n.js";

const state = { csrf: "", me: null, lang: "en", timers: [] };

// ---- i18n -----------------------------------------------------------------

export function lang() { return state.lang; }

function chooseLang() {
  const saved = localStorage.getItem("petrel.lang");
  if (saved && catalogs[saved]) return saved;
  const l = document.documentElement.lang; // chosen by the server from Accept-Language
  return catalogs[l] ? l : "en";
}

// t looks a message up in the current catalog ({name} placeholders).
export function t(key, vars) {
  const msg = catalogs[state.lang][key] ?? catalogs.en[key] ?? key;
  return vars ? msg.replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? "")) : msg;
}

export function fmtNum(n, opts) { return new Intl.NumberFormat(state.lang, opts).format(n ?? 0); }
export function fmtPct(x) { return fmtNum(x ?? 0, { style: "percent", maximumFractionDigits: 1 }); }
export function fmtDate(s) {
  if (!s) return "";
  const d = new Date(s);
  if (isNaN(d) || d.getFullYear() < 1971) return "";
  if (state.dateFmt?.lang !== state.lang) {
    state.dateFmt = { lang: state.lang, f: new Intl.DateTimeFormat(state.lang, { year: "numeric", month: "short", day: "numeric", hour: "numeric", minute: "2-digit", timeZoneName: "short" }) };
  }
  return state.dateFmt.f.format(d);
}
export function timeZone() { return Intl.DateTimeFormat().resolvedOptions().timeZone; }

// ---- DOM ------------------------------------------------------------------

// h builds an element: attrs are attributes (on* are listeners, "text"
// sets textContent), children are nodes or strings (text nodes).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else if (k === "value") el.value = v;
    else if (k === "checked" || k === "selected" || k === "disabled" || k === "required") el[k] = !!v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let uid = 0;
// field is a labelled control: label text, then the control.
export function field(label, control, cls) {
  if (!control.id) control.id = "f" + (++uid);
  return h("label", { for: control.id, class: cls }, label, control);
}
export function input(attrs) { return h("input", attrs); }
export function select(attrs, options) {
  return h("select", attrs, options.map(o => Array.isArray(o) ? h("option", { value: o[0], selected: o[2] }, o[1]) : h("option", { value: o }, o)));
}
export function button(label, onclick, attrs) { return h("button", { type: "button", onclick, ...attrs }, label); }
export function badge(s) { return h("span", { class: "badge " + s }, catalogs.en["state." + s] ? t("state." + s) : s); }
export function table(headers, rows, attrs) {
  return h("div", { class: "scroll" }, h("table", attrs,
    h("thead", null, h("tr", null, headers.map(x => h("th", { scope: "col", class: x.num ? "num" : undefined }, x.label ?? x)))),
    h("tbody", null, rows)));
}
export function message(kind, text) { return h("div", { class: "msg " + kind, role: kind === "error" ? "alert" : "status" }, text); }

// ---- API ------------------------------------------------------------------

export class APIError extends Error {
  constructor(status, code, msg) { super(msg); this.status = status; this.code = code; }
}

// api calls the JSON API; body is JSON unless it is FormData or a Blob
// (sent as it is, with its type: a CSV upload).
export async function api(method, path, body) {
  const headers = {};
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = state.csrf;
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body instanceof Blob) { headers["Content-Type"] = body.type || "application/octet-stream"; payload = body; }
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  const resp = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) {
    if (resp.status === 401 && !path.startsWith("/ui/login") && path !== "/api/v1/session") { state.me = null; go("#/login"); }
    const e = data?.error || {};
    throw new APIError(resp.status, e.code || "http_" + resp.status, e.message || resp.statusText);
  }
  return data;
}

// run shows an API error in place of throwing it.
export async function run(box, f) {
  try { return await f(); } catch (e) {
    if (box) box.replaceChildren(message("error", e instanceof APIError ? t("error.api", { status: e.status, message: e.message }) : String(e)));
    return undefined;
  }
}

// every polls f while the page is shown.
export function every(ms, f) { state.timers.push(setInterval(f, ms)); }

export function go(hash) { if (location.hash !== hash) location.hash = hash; else route(); }
export function me() { return state.me; }
export function can(write) { return !!state.me && (!write || state.me.role !== "viewer"); }

// ---- shell ----------------------------------------------------------------

export const sections = [
  ["#/domains", "nav.domains", "home.domains"],
  ["#/audiences", "nav.audiences", "home.audiences"],
  ["#/templates", "nav.templates", "home.templates"],
  ["#/campaigns", "nav.campaigns", "home.campaigns"],
  ["#/automation", "nav.automation", "home.automation"],
  ["#/stats", "nav.stats", "home.stats"],
  ["#/operations", "nav.operations", "home.operations"],
  ["#/users", "nav.users", "home.users"],
  ["#/tracking", "nav.tracking", "home.tracking"],
];

function header() {
  const top = document.getElementById("top");
  const cur = "#/" + (location.hash.slice(2).split("/")[0] || "");
  const langSel = select({ id: "lang", "aria-label": t("lang.label"), onchange: e => { localStorage.setItem("petrel.lang", e.target.value); state.lang = e.target.value; start(); } },
    Object.keys(catalogs).map(l => [l, catalogs[l]["lang.name"], l === state.lang]));
  const right = h("div", { class: "right" }, h("span", { class: "muted" }, t("tz", { tz: timeZone() })), langSel);
  if (state.me) {
    right.append(h("span", { class: "muted", id: "whoami" }, `${state.me.user?.email ?? state.me.key} (${t("role." + state.me.role)})`),
      button(t("nav.logout"), async () => { await run(null, () => api("DELETE", "/api/v1/session")); state.me = null; state.csrf = ""; go("#/login"); }, { class: "secondary", id: "logout" }));
  }
  top.replaceChildren(h("a", { class: "brand", href: "#/" }, "Petrel"),
    state.me ? h("nav", { "aria-label": t("nav.label") }, h("ul", null, sections.map(([href, key]) =>
      h("li", null, h("a", { href, "aria-current": cur === href ? "page" : undefined }, t(key)))))) : null,
    right);
  document.getElementById("skip").textContent = t("skip");
  document.getElementById("foot").textContent = t("footer");
  document.documentElement.lang = state.lang;
}

const pages = {
  login: () => import("./pages/login.js"),
  "": () => import("./pages/home.js"),
  domains: () => import("./pages/domains.js"),
  audiences: () => import("./pages/audiences.js"),
  templates: () => import("./pages/templates.js"),
  campaigns: () => import("./pages/campaigns.js"),
  stats: () => import("./pages/stats.js"),
  automation: () => import("./pages/automation.js"),
  operations: () => import("./pages/operations.js"),
  users: () => import("./pages/users.js"),
  tracking: () => import("./pages/tracking.js"),
};

export async function route() {
  state.timers.forEach(clearInterval);
  state.timers = [];
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  let name = parts[0] || "";
  if (!state.me && name !== "login") name = "login";
  const main = document.getElementById("main");
  header();
  const load = pages[name];
  if (!load) { main.replaceChildren(h("h1", null, t("notfound"))); return; }
  const t0 = performance.now();
  const mod = await load();
  const view = h("div", { id: "page-" + (name || "home") });
  main.replaceChildren(view);
  await mod.render(view, parts.slice(1));
  view.setAttribute("data-ready", "1");
  document.title = (view.querySelector("h1")?.textContent || "") + " · Petrel";
  window.petrelLastRender = performance.now() - t0; // this route's render
  window.petrelReadyAt = performance.now(); // since the page's navigation started (load-time tests)
}

// signedIn records the session (from the login answer or GET /api/v1/session).
export function signedIn(sess) { state.me = sess; state.csrf = sess.csrf || ""; }

async function start() {
  state.lang = chooseLang();
  // Fetch the route's page module while the session is asked for (one
  // round trip less per page load; route() then finds it loaded).
  pages[location.hash.replace(/^#\/?/, "").split("/")[0] || ""]?.().catch(() => {});
  if (!state.me) {
    try { signedIn(await api("GET", "/api/v1/session")); } catch { state.me = null; }
  }
  await route();
}

window.addEventListener("hashchange", route);
start();
