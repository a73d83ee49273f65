import { h, t, field, input, select, api, run, button, table, message, me, fmtDate } from "../app.js";

const roles = ["owner", "marketer", "viewer"];

export async function render(view) {
  view.append(h("h1", null, t("users.title")));
  const box = h("div");
  view.append(box);
  const r = await run(box, () => api("GET", "/api/v1/users"));
  if (!r) return;
  view.append(table([t("users.email"), t("users.name"), t("users.role"), t("created"), ""], r.users.map(u => {
    const role = select({ "aria-label": t("users.role") + " " + u.email, onchange: async e => {
      if (await run(box, () => api("PATCH", "/api/v1/users/" + u.id, { role: e.target.value }))) box.replaceChildren(message("ok", t("saved")));
    } }, roles.map(x => [x, t("role." + x), x === u.role]));
    return h("tr", null, h("td", null, u.email), h("td", null, u.name || ""), h("td", null, role), h("td", null, fmtDate(u.created)),
      h("td", null, u.id === me().user?.id ? null : button(t("delete"), async () => { if (await run(box, () => api("DELETE", "/api/v1/users/" + u.id))) { view.replaceChildren(); render(view); } }, { class: "danger" })));
  })));
  const email = input({ type: "email", required: true, id: "user-email" });
  const name = input({ id: "user-name" });
  const pw = input({ type: "password", required: true, minlength: 10, autocomplete: "new-password", id: "user-password" });
  const role = select({ id: "user-role" }, roles.map(x => [x, t("role." + x), x === "marketer"]));
  view.append(h("form", { id: "user-add", onsubmit: async e => {
    e.preventDefault();
    if (await run(box, () => api("POST", "/api/v1/users", { email: email.value, name: name.value, password: pw.value, role: role.value }))) { view.replaceChildren(); render(view); }
  } }, h("h2", null, t("users.add")), h("div", { class: "row" }, field(t("users.email"), email), field(t("users.name"), name), field(t("users.password"), pw), field(t("users.role"), role),
    h("button", { type: "submit" }, t("create")))));
  await keys(view);
}

async function keys(view) {
  const box = h("div");
  view.append(h("h2", null, t("keys.title")), h("p", { class: "muted", id: "keys-help" }, t("keys.help")), box);
  const r = await run(box, () => api("GET", "/api/v1/keys"));
  if (!r) return;
  const list = h("div");
  list.append(table([t("keys.name"), t("keys.prefix"), t("users.role"), t("camp.stream"), t("keys.domains"), t("created"), ""], r.keys.map(k =>
    h("tr", null, h("td", null, k.name), h("td", { class: "mono" }, k.prefix + "…"), h("td", null, t("role." + k.role)), h("td", null, k.stream), h("td", null, (k.domains || []).join(", ") || t("keys.any")),
      h("td", null, fmtDate(k.created)), h("td", null, button(t("keys.revoke"), async () => { if (await run(box, () => api("DELETE", "/api/v1/keys/" + k.id))) { list.remove(); view.querySelector("#key-add")?.remove(); keys(view); } }, { class: "danger" }))))));
  const name = input({ required: true, id: "key-name" });
  const role = select({ id: "key-role" }, roles.map(x => [x, t("role." + x), x === "marketer"]));
  // Any stream name (shaping may define more than the two usual ones).
  const stream = input({ id: "key-stream", list: "key-streams", value: "transactional", required: true, pattern: "[a-z0-9][a-z0-9_.-]*" });
  const streams = h("datalist", { id: "key-streams" }, ["transactional", "marketing"].map(x => h("option", { value: x })));
  const domains = input({ id: "key-domains", placeholder: "mail.example.com" });
  view.append(list, h("form", { id: "key-add", onsubmit: async e => {
    e.preventDefault();
    const k = await run(box, () => api("POST", "/api/v1/keys", { name: name.value, role: role.value, stream: stream.value, domains: domains.value.split(",").map(s => s.trim()).filter(Boolean) }));
    if (k) box.replaceChildren(message("ok", t("keys.created")), h("p", null, h("code", { id: "key-secret" }, k.secret)));
  } }, h("div", { class: "row" }, field(t("keys.name"), name), field(t("users.role"), role), field(t("camp.stream"), stream), streams, field(t("keys.domains"), domains),
    h("button", { type: "submit" }, t("keys.create")))));
}
