// Settings → Tracking: the open, click and unsubscribe tracking switches
// per sending domain (defaults) and per API key (overrides), and the
// custom tracking domains with their CNAME and certificate status. Every
// control calls the tracking API (/api/v1/tracking/...).
import { h, t, field, input, select, api, run, button, badge, table, message, can, fmtDate } from "../app.js";

const switches = ["opens", "clicks", "unsubscribe"];

// tri maps a stored switch (true, false, null) to the select's value.
function tri(v) { return v === true ? "on" : v === false ? "off" : "inherit"; }
function untri(s) { return s === "on" ? true : s === "off" ? false : null; }

export async function render(view) {
  view.append(h("h1", null, t("trk.title")), h("p", { class: "muted" }, t("trk.help")));
  const box = h("div", { id: "trk-status" });
  view.append(box);
  const set = await run(box, () => api("GET", "/api/v1/tracking/settings"));
  if (!set) return;
  const stored = new Map(set.settings.map(s => [s.scope + " " + s.name, s]));
  const write = can(true);

  // One row per scope: three selects, saved on change.
  const row = (scope, name) => {
    const cur = stored.get(scope + " " + name) || {};
    const sels = {};
    for (const sw of switches) {
      sels[sw] = select({ "aria-label": t("trk." + sw) + " " + name, "data-scope": scope, "data-name": name, "data-switch": sw, disabled: !write,
        onchange: async () => {
          const body = Object.fromEntries(switches.map(k => [k, untri(sels[k].value)]));
          const r = await run(box, () => api("PUT", "/api/v1/tracking/settings/" + scope + "/" + encodeURIComponent(name), body));
          if (r) box.replaceChildren(message("ok", t("trk.saved", { name })));
        } },
      [["inherit", t("trk.inherit"), tri(cur[sw]) === "inherit"], ["on", t("trk.on"), tri(cur[sw]) === "on"], ["off", t("trk.off"), tri(cur[sw]) === "off"]]);
    }
    return h("tr", { "data-scope": scope, "data-name": name }, h("td", { class: "mono" }, name), switches.map(sw => h("td", null, sels[sw])));
  };
  const heads = [t("trk.name"), t("trk.opens"), t("trk.clicks"), t("trk.unsubscribe")];

  // Sending domains: the registered ones and any with a stored setting.
  const doms = await run(box, () => api("GET", "/api/v1/domains"));
  const domNames = new Set((doms?.domains || []).map(d => d.domain));
  set.settings.filter(s => s.scope === "domain").forEach(s => domNames.add(s.name));
  const domBody = h("tbody");
  const domTable = h("div", { class: "scroll" }, h("table", { id: "trk-domains" },
    h("thead", null, h("tr", null, heads.map(x => h("th", { scope: "col" }, x)))), domBody));
  [...domNames].sort().forEach(n => domBody.append(row("domain", n)));
  view.append(h("h2", null, t("trk.domains")), h("p", { class: "muted" }, t("trk.domainshelp")), domTable);

  // API keys: the database keys (owners may list them), stored ones, and
  // any other name (a configured [[http.api_keys]] key).
  const keys = await run(null, () => api("GET", "/api/v1/keys"));
  const keyNames = new Set((keys?.keys || []).map(k => k.name));
  set.settings.filter(s => s.scope === "key").forEach(s => keyNames.add(s.name));
  const keyBody = h("tbody");
  const keyTable = h("div", { class: "scroll" }, h("table", { id: "trk-keys" },
    h("thead", null, h("tr", null, heads.map(x => h("th", { scope: "col" }, x)))), keyBody));
  [...keyNames].sort().forEach(n => keyBody.append(row("key", n)));
  view.append(h("h2", null, t("trk.keys")), h("p", { class: "muted" }, t("trk.keyshelp")), keyTable);
  if (write) {
    const name = input({ id: "trk-key-name", required: true, autocomplete: "off" });
    view.append(h("form", { id: "trk-key-add", onsubmit: e => {
      e.preventDefault();
      const n = name.value.trim();
      if (n && !keyBody.querySelector(`tr[data-name="${CSS.escape(n)}"]`)) keyBody.append(row("key", n));
      name.value = "";
    } }, h("div", { class: "row" }, field(t("trk.keyname"), name), h("button", { type: "submit" }, t("trk.addkey")))));
  }

  await trackingDomains(view, box, write);
}

// trackingDomains lists the custom tracking domains: the CNAME record to
// publish, its check, and the certificate (status, expiry, days left).
async function trackingDomains(view, box, write) {
  const sec = h("section", { id: "trk-hosts" });
  view.append(sec);
  const fill = async () => {
    const r = await run(box, () => api("GET", "/api/v1/tracking/domains"));
    if (!r) return;
    const rows = r.domains.map(d => {
      const c = d.certificate;
      const cert = !d.https ? t("trk.nohttps") : c ? h("span", null, badge(c.status === "none" ? "missing" : c.status), " ",
        c.not_after ? t("trk.until", { date: fmtDate(c.not_after), days: c.days_left }) : "", c.source ? " · " + c.source : "",
        c.error ? h("div", { class: "muted" }, c.error) : null) : "—";
      return h("tr", { "data-host": d.host }, h("td", { class: "mono" }, d.host), h("td", null, d.sending_domain),
        h("td", null, h("code", null, `${d.host}. CNAME ${d.target}.`)),
        h("td", null, badge(d.status), d.detail ? h("div", { class: "muted" }, d.detail) : null),
        h("td", { class: "trk-cert" }, cert),
        h("td", null, write ? button(t("trk.check"), async ev => {
          ev.target.disabled = true;
          if (await run(box, () => api("POST", "/api/v1/tracking/domains/" + encodeURIComponent(d.host) + "/check"))) await fill();
          else ev.target.disabled = false;
        }, { class: "secondary", "aria-label": t("trk.check") + " " + d.host }) : null));
    });
    const list = r.domains.length
      ? table([t("trk.host"), t("trk.sending"), t("trk.cname"), t("trk.cnamestatus"), t("trk.cert"), ""], rows, { id: "trk-hosts-table" })
      : h("p", { class: "muted" }, t("trk.nohosts"));
    sec.replaceChildren(h("h2", null, t("trk.hosts")), h("p", { class: "muted" }, t("trk.hostshelp")), list, write ? addForm() : "");
  };
  const addForm = () => {
    const host = input({ id: "trk-host", required: true, placeholder: "track.shop.example" });
    const sending = input({ id: "trk-host-sending", required: true, placeholder: "shop.example" });
    const https = input({ type: "checkbox", id: "trk-host-https" });
    return h("form", { id: "trk-host-add", onsubmit: async e => {
      e.preventDefault();
      if (await run(box, () => api("POST", "/api/v1/tracking/domains", { host: host.value.trim(), sending_domain: sending.value.trim(), https: https.checked }))) await fill();
    } }, h("div", { class: "row" }, field(t("trk.host"), host), field(t("trk.sending"), sending), field(t("trk.https"), https),
      h("button", { type: "submit" }, t("trk.addhost"))));
  };
  await fill();
}
