import { h, t, field, input, select, api, run, button, badge, table, message, go, can, fmtDate, fmtNum, every, timeZone, APIError } from "../app.js";

export async function render(view, [id]) {
  if (id === "new") return create(view);
  if (id) return detail(view, id);
  const box = h("div");
  view.append(h("h1", null, t("camp.title")), can(true) ? h("p", null, h("a", { href: "#/campaigns/new", id: "camp-new" }, t("camp.new"))) : null, box);
  let r;
  try { r = await api("GET", "/api/v1/campaigns"); } catch (e) {
    box.replaceChildren(message("error", e instanceof APIError && (e.status === 404 || e.status === 405) ? t("camp.nolist") : e.message));
  }
  const cs = r?.campaigns || [];
  const open = input({ id: "camp-open", "aria-label": t("camp.id") });
  view.append(h("form", { class: "row", onsubmit: e => { e.preventDefault(); if (open.value) go("#/campaigns/" + encodeURIComponent(open.value)); } },
    field(t("camp.open"), open), h("button", { type: "submit", class: "secondary" }, t("open"))));
  if (!r) return;
  if (!cs.length) { view.append(h("p", { class: "muted" }, t("camp.none"))); return; }
  view.append(table([t("camp.id"), t("camp.subject"), t("camp.status"), { label: t("camp.sent"), num: true }, t("camp.scheduled"), t("created")], cs.map(c =>
    h("tr", { "data-campaign": c.id }, h("td", null, h("a", { href: "#/campaigns/" + encodeURIComponent(c.id) }, c.id)), h("td", null, c.subject || (c.template ? "%" + c.template + "%" : "")),
      h("td", null, badge(c.status)), h("td", { class: "num" }, fmtNum(c.progress?.sent)), h("td", null, fmtDate(c.scheduled_at)), h("td", null, fmtDate(c.created))))));
  if (r.next) view.append(h("p", { class: "muted" }, t("camp.more")));
}

async function create(view) {
  const box = h("div");
  view.append(h("p", null, h("a", { href: "#/campaigns" }, "← " + t("camp.title"))), h("h1", null, t("camp.new")), box);
  const [auds, doms, tpls, keys] = await Promise.all([
    run(box, () => api("GET", "/api/v1/audiences")), run(box, () => api("GET", "/api/v1/domains")), run(box, () => api("GET", "/api/v1/templates")),
    run(null, () => api("GET", "/api/v1/sending-keys"))]);
  const aud = select({ id: "camp-audience", required: true }, [["", "—"], ...(auds?.audiences || []).map(a => [String(a.id), a.name])]);
  const seg = select({ id: "camp-segment" }, [["", t("camp.everyone")]]);
  // Only the latest change's answer fills the list, and a segment already
  // chosen stays chosen (two changes in a row used to race: the older
  // answer, arriving last, reset the choice to everyone).
  let segReq = 0;
  aud.addEventListener("change", async () => {
    const my = ++segReq;
    const s = aud.value ? (await run(box, () => api("GET", `/api/v1/audiences/${aud.value}/segments`)))?.segments || [] : [];
    if (my !== segReq) return;
    const keep = seg.value;
    seg.replaceChildren(h("option", { value: "" }, t("camp.everyone")), ...s.map(x => h("option", { value: x.expression }, x.name)));
    if (s.some(x => x.expression === keep)) seg.value = keep;
  });
  const domain = select({ id: "camp-domain", required: true }, [["", "—"], ...(doms?.domains || []).map(d => [d.domain, `${d.domain} (${t("state." + d.status)})`])]);
  const stream = select({ id: "camp-stream" }, [["marketing", t("type.marketing")], ["transactional", t("type.transactional")]]);
  // The API key the campaign sends under: its stream and sending domains
  // limit the campaign (the server refuses what they do not allow; the
  // check below says so first).
  const keyList = keys?.keys || [];
  const apiKey = select({ id: "camp-apikey" }, [["", t("camp.nokey")], ...keyList.map(k => [k.name, k.domains?.length ? `${k.name} (${k.stream}: ${k.domains.join(", ")})` : `${k.name} (${k.stream})`])]);
  apiKey.addEventListener("change", () => {
    const k = keyList.find(x => x.name === apiKey.value);
    if (k && [...stream.options].some(o => o.value === k.stream)) stream.value = k.stream;
  });
  const keyAllows = (k, d) => !k.domains?.length || k.domains.some(a => d === a || d.endsWith("." + a));
  const local = input({ id: "camp-from-local", value: "news", required: true });
  const fromName = input({ id: "camp-from-name" });
  const replyTo = input({ id: "camp-reply-to", type: "email" });
  const tpl = select({ id: "camp-template" }, [["", t("camp.notemplate")], ...(tpls?.templates || []).map(x => [x.call_name, x.name || x.call_name])]);
  const subject = input({ id: "camp-subject", required: true, class: "wide" });
  const html = h("textarea", { id: "camp-html", rows: 8 });
  const text = h("textarea", { id: "camp-text", rows: 4 });
  tpl.addEventListener("change", () => {
    const x = (tpls?.templates || []).find(y => y.call_name === tpl.value);
    if (x) { subject.value = x.subject || ""; html.value = x.html || ""; text.value = x.text || ""; }
  });
  const postal = input({ id: "camp-postal", class: "wide" });
  const id = input({ id: "camp-id", required: true, pattern: "[a-z0-9][a-z0-9_\\-]*" });
  const utm = ["utm_source", "utm_medium", "utm_campaign"].map(k => input({ id: "camp-" + k, "data-utm": k }));
  const when = input({ id: "camp-when", type: "datetime-local" });
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [timeZone(), "UTC"];
  const tz = select({ id: "camp-tz" }, (zones.includes(timeZone()) ? zones : [timeZone(), ...zones]).map(z => [z, z, z === timeZone()]));
  const checks = h("div", { id: "camp-checks" });
  const confirm = h("button", { type: "button", id: "camp-confirm", disabled: true }, t("camp.confirm"));
  let spec;
  function addUTM(s) {
    const p = new URLSearchParams();
    utm.forEach(u => { if (u.value) p.set(u.dataset.utm, u.value); });
    if (![...p].length) return s;
    return s.replace(/href="(https?:\/\/[^"]+)"/g, (m, url) => `href="${url}${url.includes("?") ? "&" : "?"}${p}"`);
  }
  async function check() {
    const items = [];
    const d = (doms?.domains || []).find(x => x.domain === domain.value);
    items.push([!!d && d.status !== "unverified", d ? t("camp.chk.domain", { d: d.domain, s: t("state." + d.status) }) : t("camp.chk.nodomain")]);
    const k = keyList.find(x => x.name === apiKey.value);
    if (k) {
      if (!keyAllows(k, domain.value)) items.push([false, t("camp.chk.keydomain", { k: k.name, d: domain.value, l: k.domains.join(", ") })]);
      else if (k.stream !== stream.value) items.push([false, t("camp.chk.keystream", { k: k.name, s: k.stream })]);
      else items.push([true, t("camp.chk.key", { k: k.name, d: domain.value, s: k.stream })]);
    }
    items.push([!!aud.value, aud.value ? t("camp.chk.audience") : t("camp.chk.noaudience")]);
    if (aud.value) {
      const c = await run(null, () => api("POST", `/api/v1/audiences/${aud.value}/segments/count`, { expression: seg.value || "true" }));
      items.push([!!c?.count, t("camp.chk.recipients", { n: fmtNum(c?.count ?? 0) })]);
    }
    items.push([!!subject.value && !!(html.value || text.value), t("camp.chk.content")]);
    items.push([stream.value !== "marketing" || !!postal.value, t("camp.chk.postal")]);
    items.push([/%unsubscribe_url%/.test(html.value + text.value) || stream.value !== "marketing", t("camp.chk.unsub")]);
    if (when.value) items.push([true, t("camp.chk.when", { when: when.value.replace("T", " "), tz: tz.value })]);
    checks.replaceChildren(h("h2", null, t("camp.checks")), h("ul", null, items.map(([ok, s]) => h("li", { class: ok ? "ok" : "bad" }, (ok ? "✓ " : "✗ ") + s))));
    spec = { id: id.value, audience: Number(aud.value), segment: seg.value, stream: stream.value, api_key: apiKey.value || undefined, from: `${local.value}@${domain.value}`, from_name: fromName.value,
      reply_to: replyTo.value, subject: subject.value, html: addUTM(html.value), text: text.value, postal_address: postal.value };
    confirm.disabled = !items.slice(0, k ? 5 : 4).every(([ok]) => ok) || !id.value;
  }
  confirm.addEventListener("click", async () => {
    confirm.disabled = true;
    const c = await run(box, () => api("POST", "/api/v1/campaigns", spec));
    if (!c) { confirm.disabled = false; return; }
    if (when.value) {
      const s = await run(box, () => api("POST", `/api/v1/campaigns/${encodeURIComponent(c.spec.id)}/schedule`, { send_at: when.value, time_zone: tz.value }));
      if (!s) return;
    } else if (!(await run(box, () => api("POST", `/api/v1/campaigns/${encodeURIComponent(c.spec.id)}/send`)))) return;
    go("#/campaigns/" + encodeURIComponent(c.spec.id));
  });
  const step = (n, title, ...kids) => h("fieldset", { class: "card" }, h("legend", null, `${n}. ${t(title)}`), h("div", { class: "row" }, ...kids));
  view.append(h("form", { id: "camp-form", onsubmit: e => { e.preventDefault(); check(); } },
    step(1, "camp.s.recipients", field(t("camp.audience"), aud), field(t("camp.segment"), seg)),
    step(2, "camp.s.domain", field(t("camp.domain"), domain), field(t("camp.apikey"), apiKey), field(t("camp.stream"), stream)),
    step(3, "camp.s.sender", field(t("camp.fromlocal"), local), field(t("camp.fromname"), fromName), field(t("camp.replyto"), replyTo)),
    step(4, "camp.s.content", field(t("camp.template"), tpl), field(t("camp.subject"), subject), field(t("camp.html"), html), field(t("camp.text"), text), field(t("camp.postal"), postal)),
    step(5, "camp.s.utm", ...utm.map(u => field(u.dataset.utm, u))),
    step(6, "camp.s.when", field(t("camp.id"), id), field(t("camp.when"), when), field(t("camp.tz"), tz), h("p", { class: "muted" }, t("camp.whenhelp"))),
    h("button", { type: "submit", id: "camp-check" }, t("camp.check"))), checks, confirm);
}

async function detail(view, id) {
  const box = h("div");
  const out = h("div", { id: "camp-detail" });
  view.append(h("p", null, h("a", { href: "#/campaigns" }, "← " + t("camp.title"))), h("h1", null, id), box, out);
  async function tick() {
    const c = await run(box, () => api("GET", "/api/v1/campaigns/" + encodeURIComponent(id)));
    if (!c) return;
    const skipped = Object.entries(c.progress?.skipped || {});
    const act = (label, path, cls) => can(true) ? button(t(label), async () => { if (await run(box, () => api("POST", `/api/v1/campaigns/${encodeURIComponent(id)}/${path}`))) tick(); }, { class: cls, id: "camp-" + path }) : null;
    out.replaceChildren(h("p", null, t("camp.status") + ": ", badge(c.status), c.error ? " " + c.error : ""),
      h("div", { class: "cards" }, h("div", { class: "stat", "data-stat": "sent" }, h("div", { class: "muted" }, t("camp.sent")), h("div", { class: "v" }, fmtNum(c.progress?.sent))),
        ...skipped.map(([k, v]) => h("div", { class: "stat" }, h("div", { class: "muted" }, t("camp.skipped") + " " + k), h("div", { class: "v" }, fmtNum(v))))),
      h("div", { class: "row" }, c.status === "draft" ? act("camp.send", "send") : null,
        c.status === "sending" || c.status === "scheduled" ? act("camp.pause", "pause", "secondary") : null,
        c.status === "paused" ? act("camp.resume", "resume", "secondary") : null,
        ["sending", "scheduled", "paused"].includes(c.status) ? act("camp.cancel", "cancel", "danger") : null,
        h("a", { href: "#/stats/" + encodeURIComponent(id), id: "camp-stats" }, t("camp.stats"))),
      h("dl", null, [["camp.subject", c.spec.subject], ["camp.from", `${c.spec.from_name || ""} <${c.spec.from}>`], ["camp.stream", c.spec.stream], ["camp.apikey", c.spec.api_key || t("camp.nokey")],
        ["camp.segment", c.spec.segment || t("camp.everyone")], ["created", fmtDate(c.created)], ["camp.scheduled", fmtDate(c.scheduled_at)],
        ["camp.started", fmtDate(c.started_at)], ["camp.finished", fmtDate(c.finished_at)]].flatMap(([k, v]) => [h("dt", null, t(k)), h("dd", null, v || "")])));
  }
  await tick();
  every(2000, tick);
  if (can(true)) {
    const to = input({ id: "camp-test-to", type: "email", required: true, multiple: true });
    const tbox = h("div");
    view.append(h("form", { id: "camp-test", onsubmit: async e => {
      e.preventDefault();
      const r = await run(tbox, () => api("POST", `/api/v1/campaigns/${encodeURIComponent(id)}/test`, { to: to.value.split(",").map(s => s.trim()).filter(Boolean) }));
      if (r) tbox.replaceChildren(message("ok", t("tpl.testsent")));
    } }, h("h2", null, t("tpl.test")), h("div", { class: "row" }, field(t("tpl.testto"), to), h("button", { type: "submit" }, t("tpl.testbtn"))), tbox));
  }
}
