import { h, t, field, input, select, api, run, button, table, message, go, can, fmtDate, fmtNum } from "../app.js";

const placeholders = ["email", "name", "first_name", "phone", "gender", "birthday", "age", "time_zone", "locale", "unsubscribe_url"];
const sample = { email: "ann@example.com", name: "Ann Lee", first_name: "Ann", unsubscribe_url: "#" };

export async function render(view, [mode, call]) {
  if (mode === "edit" || mode === "new") return editor(view, mode === "edit" ? call : "");
  const box = h("div");
  view.append(h("h1", null, t("tpl.title")), can(true) ? h("p", null, h("a", { href: "#/templates/new", id: "tpl-new" }, t("tpl.new"))) : null, box);
  const r = await run(box, () => api("GET", "/api/v1/templates"));
  if (!r) return;
  if (!r.templates.length) { view.append(h("p", { class: "muted" }, t("tpl.none"))); return; }
  view.append(table([t("tpl.name"), t("tpl.type"), t("tpl.call"), t("tpl.subject"), { label: t("tpl.version"), num: true }, t("updated")], r.templates.map(tp =>
    h("tr", null, h("td", null, h("a", { href: "#/templates/edit/" + encodeURIComponent(tp.call_name) }, tp.name || tp.call_name)), h("td", null, t("type." + tp.type)),
      h("td", { class: "mono" }, tp.call_name), h("td", null, tp.subject || ""), h("td", { class: "num" }, fmtNum(tp.version)), h("td", null, fmtDate(tp.created))))));
}

// substitute renders %field% placeholders with sample values for the preview.
function substitute(s) { return s.replace(/%([a-z0-9_]+)%/g, (_, k) => sample[k] ?? "[" + k + "]"); }

async function editor(view, call) {
  const box = h("div");
  view.append(h("p", null, h("a", { href: "#/templates" }, "← " + t("tpl.title"))), h("h1", null, call || t("tpl.new")), box);
  let tp = { call_name: call, name: "", type: "marketing", subject: "", preheader: "", html: "", text: "", variables: [] };
  let versions = [];
  if (call) {
    tp = (await run(box, () => api("GET", "/api/v1/templates/" + encodeURIComponent(call)))) || tp;
    versions = (await run(box, () => api("GET", "/api/v1/templates/" + encodeURIComponent(call) + "/versions")))?.versions || [];
  }
  const c = {
    call_name: input({ id: "tpl-call", required: true, value: tp.call_name, pattern: "[a-z0-9][a-z0-9_.\\-]*", readonly: call ? true : undefined }),
    name: input({ id: "tpl-name", value: tp.name }),
    type: select({ id: "tpl-type" }, [["marketing", t("type.marketing"), tp.type === "marketing"], ["transactional", t("type.transactional"), tp.type === "transactional"]]),
    subject: input({ id: "tpl-subject", value: tp.subject, class: "wide" }),
    preheader: input({ id: "tpl-preheader", value: tp.preheader }),
    variables: input({ id: "tpl-vars", value: (tp.variables || []).join(", "), placeholder: "name, first_name" }),
  };
  const html = h("textarea", { id: "tpl-html", rows: 16, value: tp.html });
  const text = h("textarea", { id: "tpl-text", rows: 6, value: tp.text });
  let target = html;
  html.addEventListener("focus", () => { target = html; });
  text.addEventListener("focus", () => { target = text; });
  c.subject.addEventListener("focus", () => { target = c.subject; });
  const picker = select({ id: "tpl-picker", "aria-label": t("tpl.insert") }, [["", t("tpl.insert")], ...placeholders.map(p => [p, "%" + p + "%"])]);
  picker.addEventListener("change", () => {
    if (!picker.value) return;
    const ins = "%" + picker.value + "%";
    const s = target.selectionStart ?? target.value.length, e = target.selectionEnd ?? s;
    target.value = target.value.slice(0, s) + ins + target.value.slice(e);
    target.focus();
    target.selectionStart = target.selectionEnd = s + ins.length;
    picker.value = "";
    refresh();
  });
  const frame = h("iframe", { id: "tpl-preview", sandbox: "", title: t("tpl.preview"), width: 640 });
  const subjPrev = h("p", { id: "tpl-subject-preview" });
  function refresh() {
    frame.srcdoc = substitute(html.value || "<pre>" + text.value.replace(/[&<]/g, m => m === "&" ? "&amp;" : "&lt;") + "</pre>");
    subjPrev.textContent = t("tpl.subject") + ": " + substitute(c.subject.value);
  }
  html.addEventListener("input", refresh);
  text.addEventListener("input", refresh);
  c.subject.addEventListener("input", refresh);
  const widths = h("div", { class: "row", role: "group", "aria-label": t("tpl.width") },
    button(t("tpl.desktop"), () => { frame.width = 640; }, { class: "secondary", id: "tpl-desktop" }),
    button(t("tpl.phone"), () => { frame.width = 360; }, { class: "secondary", id: "tpl-phone" }));
  const form = h("form", { id: "tpl-form", onsubmit: async e => {
    e.preventDefault();
    const body = { call_name: c.call_name.value.trim(), name: c.name.value, type: c.type.value, subject: c.subject.value, preheader: c.preheader.value,
      html: html.value, text: text.value, variables: c.variables.value.split(",").map(s => s.trim()).filter(Boolean) };
    const saved = await run(box, () => api("POST", "/api/v1/templates", body));
    if (!saved) return;
    box.replaceChildren(message("ok", t("tpl.saved", { v: saved.version })), ...(saved.warnings || []).map(w => message("error", w)));
    if (!call) go("#/templates/edit/" + encodeURIComponent(saved.call_name));
  } }, h("div", { class: "row" }, ...Object.entries(c).map(([k, el]) => field(t("tpl." + k), el))),
    h("div", { class: "editor" },
      h("div", null, h("div", { class: "row" }, picker), field(t("tpl.html"), html), field(t("tpl.text"), text)),
      h("div", null, h("h2", null, t("tpl.preview")), widths, subjPrev, h("div", { class: "preview-wrap" }, frame))),
    can(true) ? h("button", { type: "submit", id: "tpl-save" }, t("save")) : null);
  view.append(form);
  refresh();
  if (versions.length) {
    view.append(h("h2", null, t("tpl.versions")), table([{ label: t("tpl.version"), num: true }, t("tpl.subject"), t("created"), ""], versions.slice().reverse().map(v =>
      h("tr", null, h("td", { class: "num" }, fmtNum(v.version)), h("td", null, v.subject || ""), h("td", null, fmtDate(v.created)),
        h("td", null, button(t("tpl.load"), () => { html.value = v.html || ""; text.value = v.text || ""; c.subject.value = v.subject || ""; refresh(); }, { class: "secondary" }))))));
  }
  if (call && can(true)) {
    const to = input({ type: "email", id: "tpl-test-to", required: true });
    const from = input({ type: "email", id: "tpl-test-from", required: true });
    const tbox = h("div");
    view.append(h("form", { id: "tpl-test", onsubmit: async e => {
      e.preventDefault();
      const r = await run(tbox, () => api("POST", "/api/v1/messages", { from: from.value, to: [to.value], template: call, variables: sample }));
      if (r) tbox.replaceChildren(message("ok", t("tpl.testsent")));
    } }, h("h2", null, t("tpl.test")), h("div", { class: "row" }, field(t("tpl.testfrom"), from), field(t("tpl.testto"), to), h("button", { type: "submit" }, t("tpl.testbtn"))), tbox));
  }
}
