import { h, t, me, sections } from "../app.js";

export async function render(view) {
  view.append(h("h1", null, t("home.title")),
    h("p", null, t("home.hello", { who: me().user?.email ?? me().key })),
    h("div", { class: "home" }, sections.map(([href, title, sub]) => h("a", { href }, h("strong", null, t(title)), h("span", null, t(sub))))));
}
