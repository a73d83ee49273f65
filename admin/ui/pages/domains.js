import { h, t, field, input, api, run, button, badge, table, message, go, can, fmtDate } from "../app.js";

export async function render(view, [name]) {
  if (name) return detail(view, name);
  view.append(h("h1", null, t("domains.title")));
  const box = h("div");
  if (can(true)) {
    const d = input({ name: "domain", required: true, placeholder: "mail.example.com", id: "domain-new" });
    view.append(h("form", { id: "domain-add", onsubmit: async e => {
      e.preventDefault();
      const r = await run(box, () => api("POST", "/api/v1/domains", { domain: d.value.trim() }));
      if (r) go("#/domains/" + encodeURIComponent(r.domain));
    } }, h("div", { class: "row" }, field(t("domains.add"), d), h("button", { type: "submit" }, t("domains.addbtn")))));
  }
  view.append(box);
  const list = await run(box, () => api("GET", "/api/v1/domains"));
  if (!list) return;
  if (!list.domains.length) { view.append(h("p", { class: "muted" }, t("domains.none"))); return; }
  view.append(table([t("domains.domain"), t("domains.status"), t("domains.checked")], list.domains.map(d =>
    h("tr", null, h("td", null, h("a", { href: "#/domains/" + encodeURIComponent(d.domain) }, d.domain)), h("td", null, badge(d.status)),
      h("td", null, fmtDate(d.last_check?.checked) || t("domains.never"))))));
}

async function copy(text, btn) {
  try { await navigator.clipboard.writeText(text); } catch {
    const ta = h("textarea", { value: text, "aria-hidden": "true" });
    document.body.append(ta); ta.select(); document.execCommand("copy"); ta.remove();
  }
  btn.textContent = t("copied");
  setTimeout(() => { btn.textContent = t("copy"); }, 1500);
}

async function detail(view, name) {
  const box = h("div");
  view.append(h("p", null, h("a", { href: "#/domains" }, "← " + t("domains.title"))), h("h1", null, name), box);
  const d = await run(box, () => api("GET", "/api/v1/domains/" + encodeURIComponent(name)));
  if (!d) return;
  const checks = new Map((d.last_check?.checks || []).map(c => [c.kind + " " + c.name, c]));
  view.append(h("p", null, t("domains.status") + ": ", badge(d.status), " ", h("span", { class: "muted" }, t("domains.statushelp"))));
  if (can(true)) {
    view.append(h("p", null, button(t("domains.verify"), async ev => {
      ev.target.disabled = true;
      const r = await run(box, () => api("POST", "/api/v1/domains/" + encodeURIComponent(name) + "/check"));
      if (r) { view.replaceChildren(); await detail(view, name); view.querySelector("#domain-verify")?.focus(); }
      else ev.target.disabled = false;
    }, { id: "domain-verify" })));
  }
  const missing = (d.last_check?.checks || []).filter(c => c.state !== "ok");
  if (d.last_check) {
    view.append(missing.length
      ? h("div", { class: "msg error", role: "status", id: "domain-missing" }, h("strong", null, t("domains.missing")),
        h("ul", null, missing.map(c => h("li", null, `${c.kind} ${c.name}: ${t("state." + c.state)}${c.detail ? " — " + c.detail : ""}`))))
      : message("ok", t("domains.allok")));
  } else {
    view.append(h("p", { class: "muted" }, t("domains.notchecked")));
  }
  view.append(h("h2", null, t("domains.records")), table([t("domains.kind"), t("domains.name"), t("domains.type"), t("domains.value"), t("domains.state")],
    d.records.map(r => {
      const c = checks.get(r.kind + " " + r.name);
      return h("tr", { "data-kind": r.kind }, h("td", null, r.kind), h("td", { class: "mono" }, r.name), h("td", null, r.type),
        h("td", null, h("code", null, r.value), " ", button(t("copy"), e => copy(r.value, e.target), { class: "secondary", "aria-label": t("copy") + " " + r.kind })),
        h("td", null, c ? badge(c.state) : "—", c?.found?.length ? h("div", { class: "muted mono" }, t("domains.found") + ": " + c.found.join(" | ")) : null));
    })));
}
