import { h, t, field, input, api, run, table, message, go, fmtNum, fmtPct, fmtDate, every, lang } from "../app.js";

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of kids) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// bars draws labelled horizontal bars as inline SVG (no library).
export function bars(title, items) {
  const max = Math.max(1, ...items.map(([, v]) => v));
  const rowH = 22, w = 520, lw = 170;
  return s("svg", { viewBox: `0 0 ${w} ${items.length * rowH + 24}`, width: "100%", role: "img", "aria-label": title, class: "chart" },
    s("title", null, title),
    ...items.flatMap(([label, v], i) => [
      s("text", { x: 0, y: i * rowH + 15 }, label),
      s("rect", { x: lw, y: i * rowH + 4, width: Math.max(1, (w - lw - 60) * v / max), height: 14, fill: "#0b57d0" }),
      s("text", { x: lw + (w - lw - 60) * v / max + 6, y: i * rowH + 15 }, fmtNum(v)),
    ]));
}

// line draws an hourly series as inline SVG.
function line(title, points) {
  const w = 520, hgt = 160, pad = 28;
  const max = Math.max(1, ...points.map(p => p.count));
  const x = i => pad + (points.length < 2 ? 0 : i * (w - 2 * pad) / (points.length - 1));
  const y = v => hgt - pad - v * (hgt - 2 * pad) / max;
  const fmt = new Intl.DateTimeFormat(lang(), { hour: "numeric", day: "numeric", month: "short" });
  return s("svg", { viewBox: `0 0 ${w} ${hgt}`, width: "100%", role: "img", "aria-label": title, class: "chart" }, s("title", null, title),
    s("line", { x1: pad, y1: hgt - pad, x2: w - pad, y2: hgt - pad, stroke: "#4a5563" }),
    s("polyline", { fill: "none", stroke: "#0b57d0", "stroke-width": 2, points: points.map((p, i) => `${x(i)},${y(p.count)}`).join(" ") }),
    ...points.map((p, i) => s("circle", { cx: x(i), cy: y(p.count), r: 3, fill: "#0b57d0" }, s("title", null, `${fmt.format(new Date(p.hour))}: ${fmtNum(p.count)}`))),
    points.length ? s("text", { x: pad, y: hgt - 8 }, fmt.format(new Date(points[0].hour))) : s("text", { x: pad, y: hgt / 2 }, t("stats.nodata")),
    s("text", { x: 2, y: pad }, fmtNum(max)));
}

export async function render(view, [id]) {
  view.append(h("h1", null, id ? t("stats.campaign", { id }) : t("stats.title")));
  const pick = input({ id: "stats-campaign", value: id || "" });
  view.append(h("form", { class: "row", onsubmit: e => { e.preventDefault(); if (pick.value) go("#/stats/" + encodeURIComponent(pick.value)); } },
    field(t("stats.pick"), pick), h("button", { type: "submit", class: "secondary" }, t("open"))));
  const box = h("div", { id: "stats-body" });
  view.append(box);
  if (!id) {
    const r = await run(box, () => api("GET", "/api/v1/stats"));
    const cs = (await run(null, () => api("GET", "/api/v1/campaigns")))?.campaigns || [];
    if (cs.length) view.append(h("h2", null, t("camp.title")), h("ul", null, cs.map(c => h("li", null, h("a", { href: "#/stats/" + encodeURIComponent(c.id) }, `${c.id} — ${c.subject || ""}`)))));
    if (!r) return;
    view.append(h("h2", null, t("stats.streams", { w: r.window })), table([t("camp.stream"), { label: t("stats.sent"), num: true }, { label: t("stats.delivered"), num: true },
      { label: t("stats.bounced"), num: true }, { label: t("stats.complained"), num: true }, { label: t("stats.bouncerate"), num: true }, { label: t("stats.complaintrate"), num: true }],
    (r.streams || []).map(x => h("tr", null, h("td", null, x.stream), ...[x.sent, x.delivered, x.bounced, x.complained].map(v => h("td", { class: "num" }, fmtNum(v))),
      h("td", { class: "num" }, fmtPct(x.bounce_rate)), h("td", { class: "num", style: x.complaint_rate > 0.003 ? "color:#a4161a" : undefined }, fmtPct(x.complaint_rate))))),
    h("p", { class: "muted" }, t("stats.complaintline")));
    view.append(h("h2", null, t("stats.domains", { w: r.window })), reputation(r));
    const [prov, types] = await Promise.all([run(null, () => api("GET", "/api/v1/stats/providers")), run(null, () => api("GET", "/api/v1/stats/types"))]);
    view.append(h("h2", null, t("stats.byprovider")), slices(prov?.slices, "stats-providers"), h("h2", null, t("stats.bytype")), slices(types?.slices, "stats-types"),
      h("h2", null, t("stats.bysegment")), segmentForm());
    return;
  }
  async function tick() {
    const [rep, camp] = await Promise.all([run(box, () => api("GET", "/api/v1/stats/campaigns/" + encodeURIComponent(id))), run(null, () => api("GET", "/api/v1/campaigns/" + encodeURIComponent(id)))]);
    if (!rep) return;
    const nums = [["sent", camp?.progress?.sent ?? 0], ["opens", rep.opens], ["unique_opens", rep.unique_opens], ["machine_opens", rep.machine_opens],
      ["clicks", rep.clicks], ["unique_clicks", rep.unique_clicks], ["machine_clicks", rep.machine_clicks]];
    box.replaceChildren(
      h("div", { class: "cards" }, ...nums.map(([k, v]) => h("div", { class: "stat", "data-stat": k }, h("div", { class: "muted" }, t("stats." + k)), h("div", { class: "v" }, fmtNum(v)))),
        h("div", { class: "stat", "data-stat": "ctor" }, h("div", { class: "muted" }, t("stats.ctor")), h("div", { class: "v" }, fmtPct(rep.click_to_open_rate)))),
      h("h2", null, t("stats.engagement")),
      bars(t("stats.engagement"), nums.map(([k, v]) => [t("stats." + k), v])),
      h("h2", null, t("stats.hourly")), line(t("stats.hourly"), rep.hourly_opens || []),
      h("h2", null, t("stats.links")), bars(t("stats.links"), Object.entries(rep.clicks_per_link || {}).map(([k, v]) => [t("stats.link", { n: Number(k) + 1 }), v])),
      h("p", { class: "muted" }, t("stats.updated", { at: fmtDate(new Date()) })));
  }
  await tick();
  every(2000, tick);
}

// reputation is the sending domains' complaint rates against the 0.3%
// line (from GET /api/v1/stats) and the blocklist status of every
// monitored IP and domain (GET /api/v1/stats/reputation, when the
// reputation monitor runs).
function reputation(r) {
  const box = h("div", { id: "stats-reputation" });
  const rows = (r.streams || []).flatMap(x => (x.sending_domains || []).map(d => ({ ...d, stream: x.stream })));
  box.append(rows.length ? table([t("stats.domain"), t("camp.stream"), { label: t("stats.sent"), num: true }, { label: t("stats.complained"), num: true },
    { label: t("stats.complaintrate"), num: true }, t("stats.line")], rows.map(d => {
    const over = d.complaint_rate > 0.003;
    return h("tr", { "data-domain": d.domain }, h("td", null, d.domain), h("td", null, d.stream), h("td", { class: "num" }, fmtNum(d.sent)), h("td", { class: "num" }, fmtNum(d.complained)),
      h("td", { class: "num", style: over ? "color:#a4161a" : undefined }, fmtPct(d.complaint_rate)), h("td", null, over ? t("stats.over") : t("stats.under")));
  }), { id: "stats-domain-table" }) : h("p", { class: "muted" }, t("stats.nodomains")));
  box.append(h("h2", null, t("stats.ips")), ...(r.egress_ips || []).map(ipWindow));
  const bl = h("div", { id: "stats-blocklists" });
  box.append(h("h2", null, t("stats.blocklists")), bl);
  api("GET", "/api/v1/stats/reputation").then(rep => {
    const rs = rep?.results || [];
    bl.append(h("p", null, t("stats.listed", { n: fmtNum(rep?.listed ?? 0), m: fmtNum(rs.length) })),
      rs.length ? table([t("stats.target"), t("stats.kind"), t("stats.list"), t("ops.state"), t("stats.checked")], rs.map(x => h("tr", null, h("td", { class: "mono" }, x.target), h("td", null, x.kind),
        h("td", null, x.list), h("td", null, x.error ? x.error : x.listed ? h("span", { class: "badge bad" }, t("stats.islisted"), x.meanings?.length ? " (" + x.meanings.join(", ") + ")" : "") : t("stats.notlisted")),
        h("td", null, fmtDate(x.checked))))) : "");
  }).catch(e => bl.append(h("p", { class: "muted" }, e.status === 404 ? t("stats.norep") : String(e.message || e))));
  return box;
}

// ipWindow is the egress IPs' sent, bounce rate and complaint rate over
// one window (24 h, 7 d) against the 0.3% line: a complaint counts
// against the IP the complained-about message left from.
function ipWindow(iw) {
  const name = { "24h0m0s": "24h", "168h0m0s": "7d" }[iw.window] || iw.window;
  const label = t("stats.ipwindow", { w: t("stats.w" + name) === "stats.w" + name ? name : t("stats.w" + name) });
  const ips = iw.ips || [];
  return h("div", { "data-window": name }, h("h3", null, label), ips.length ? table([t("stats.ip"), { label: t("stats.sent"), num: true }, { label: t("stats.delivered"), num: true },
    { label: t("stats.bounced"), num: true }, { label: t("stats.complained"), num: true }, { label: t("stats.bouncerate"), num: true }, { label: t("stats.complaintrate"), num: true }, t("stats.line")],
  ips.map(x => {
    const over = x.complaint_rate > 0.003;
    return h("tr", { "data-ip": x.ip }, h("td", { class: "mono" }, x.ip), ...[x.sent, x.delivered, x.bounced, x.complained].map(v => h("td", { class: "num" }, fmtNum(v))),
      h("td", { class: "num" }, fmtPct(x.bounce_rate)), h("td", { class: "num", style: over ? "color:#a4161a" : undefined }, fmtPct(x.complaint_rate)), h("td", null, over ? t("stats.over") : t("stats.under")));
  }), { id: "stats-ip-table-" + name }) : h("p", { class: "muted" }, t("stats.noips")));
}

// slices is a table of engagement counts per dimension value (mailbox
// provider, campaign type), complaint rates against the 0.3% line.
function slices(list, id) {
  if (!list?.length) return h("p", { class: "muted", id }, t("stats.nodata"));
  return table([t("stats.value"), ...["delivered", "bounced", "complained", "unique_opens", "machine_opens", "unique_clicks"].map(k => ({ label: t("stats." + k), num: true })),
    { label: t("stats.complaintrate"), num: true }], list.map(x => h("tr", { "data-value": x.value }, h("td", null, x.value || "?"),
    ...[x.delivered, x.bounced, x.complained, x.unique_opens, x.machine_opens, x.unique_clicks].map(v => h("td", { class: "num" }, fmtNum(v))),
    h("td", { class: "num", style: x.complaint_rate > 0.003 ? "color:#a4161a" : undefined }, fmtPct(x.complaint_rate)))), { id });
}

// segmentForm sums the campaigns sent to one segment of an audience.
function segmentForm() {
  const aud = input({ id: "stats-seg-audience", type: "number", min: 1, required: true });
  const seg = input({ id: "stats-seg-expr", placeholder: 'city == "Taipei"' });
  const out = h("div", { id: "stats-seg-result" });
  return h("form", { id: "stats-seg", onsubmit: async e => {
    e.preventDefault();
    const r = await run(out, () => api("GET", "/api/v1/stats/segments?" + new URLSearchParams({ audience: aud.value, segment: seg.value })));
    if (!r) return;
    out.replaceChildren(h("p", null, t("stats.segcampaigns", { n: fmtNum(r.campaigns?.length || 0) })), slices([{ ...r, value: r.segment || t("camp.everyone") }], "stats-seg-table"));
  } }, h("div", { class: "row" }, field(t("stats.segaudience"), aud), field(t("stats.segexpr"), seg), h("button", { type: "submit", class: "secondary" }, t("open"))), out);
}
