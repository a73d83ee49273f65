import { h, t, api, run, table, badge, fmtNum, fmtDate } from "../app.js";

export async function render(view, [id]) {
  const box = h("div");
  if (id) return flow(view, id);
  view.append(h("h1", null, t("flow.title")), box, h("p", { class: "muted" }, t("flow.help")));
  const r = await run(box, () => api("GET", "/api/v1/flows"));
  if (!r) return;
  const fs = r.flows || [];
  if (!fs.length) { view.append(h("p", { class: "muted" }, t("flow.none"))); return; }
  view.append(table([t("flow.id"), t("flow.name"), t("flow.trigger"), { label: t("flow.steps"), num: true }, { label: t("tpl.version"), num: true }, t("created")], fs.map(f =>
    h("tr", null, h("td", null, h("a", { href: "#/automation/" + encodeURIComponent(f.id) }, f.id)), h("td", null, f.name || ""), h("td", null, trigger(f.trigger)),
      h("td", { class: "num" }, fmtNum((f.steps || []).length)), h("td", { class: "num" }, fmtNum(f.version)), h("td", null, fmtDate(f.created))))));
}

function trigger(tr) {
  if (!tr) return "";
  return [tr.type, tr.event, tr.tag, tr.field].filter(Boolean).join(" ");
}

async function flow(view, id) {
  const box = h("div");
  view.append(h("p", null, h("a", { href: "#/automation" }, "← " + t("flow.title"))), h("h1", null, id), box);
  const [f, st] = await Promise.all([run(box, () => api("GET", "/api/v1/flows/" + encodeURIComponent(id))), run(box, () => api("GET", "/api/v1/flows/" + encodeURIComponent(id) + "/stats"))]);
  if (!f) return;
  if (st) {
    view.append(h("div", { class: "cards" }, [["entered", st.entered], ["active", st.active], ["sent", st.sent], ["converted", st.converted]].map(([k, v]) =>
      h("div", { class: "stat", "data-stat": k }, h("div", { class: "muted" }, t("flow." + k)), h("div", { class: "v" }, fmtNum(v))))));
  }
  view.append(h("p", null, t("flow.trigger") + ": ", h("code", null, trigger(f.trigger))),
    h("h2", null, t("flow.steps")), table([t("flow.step"), t("flow.type"), { label: t("flow.waiting"), num: true }, t("flow.counts")], (f.steps || []).map(s =>
      h("tr", null, h("td", { class: "mono" }, s.id), h("td", null, s.type), h("td", { class: "num" }, fmtNum(st?.waiting?.[s.id] ?? 0)),
        h("td", null, Object.entries(st?.steps?.[s.id] || {}).map(([k, v]) => `${k}: ${fmtNum(v)}`).join(" · "))))));
  if (st?.exited && Object.keys(st.exited).length) {
    view.append(h("h2", null, t("flow.exited")), h("ul", null, Object.entries(st.exited).map(([k, v]) => h("li", null, `${k}: ${fmtNum(v)}`))));
  }
}
