import { h, t, field, input, api, run, signedIn, go } from "../app.js";

export async function render(view) {
  const email = input({ type: "email", name: "email", autocomplete: "username", required: true, id: "login-email" });
  const password = input({ type: "password", name: "password", autocomplete: "current-password", required: true, id: "login-password" });
  const box = h("div");
  const form = h("form", { id: "login-form", onsubmit: async e => {
    e.preventDefault();
    const sess = await run(box, () => api("POST", "/ui/login", { email: email.value, password: password.value }));
    if (!sess) return;
    signedIn({ user: sess.user, role: sess.user.role, csrf: sess.csrf });
    go("#/");
  } }, field(t("login.email"), email), field(t("login.password"), password), box,
    h("button", { type: "submit", id: "login-submit" }, t("login.submit")));
  view.append(h("h1", null, t("login.title")), form, h("p", { class: "muted" }, t("login.first")),
    h("pre", { class: "mono" }, "petrelctl users add -email you@example.com -role owner"));
  email.focus();
}
