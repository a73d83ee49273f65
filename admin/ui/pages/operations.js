import { h, t, field, input, select, api, run, button, badge, table, message, go, can, me, fmtDate, fmtNum } from "../app.js";

export async function render(view) {
  view.append(h("h1", null, t("ops.title")));
  const qbox = h("div", { id: "ops-queue" });
  const sbox = h("div", { id: "ops-supp" });
  view.append(h("h2", null, t("ops.queue")), qbox, h("h2", null, t("ops.suppressions")), sbox, h("h2", null, t("ops.verify")), verify());
  await Promise.all([queue(qbox), suppressions(sbox)]);
}

// verify checks one address (syntax, domain, MX, SMTP probe, lists).
function verify() {
  const addr = input({ id: "verify-address", type: "email", required: true });
  const out = h("div", { id: "verify-result" });
  return h("form", { id: "verify-form", onsubmit: async e => {
    e.preventDefault();
    out.replaceChildren(h("p", { class: "muted" }, "…"));
    const r = await run(out, () => api("GET", "/api/v1/verify?address=" + encodeURIComponent(addr.value)));
    if (!r) return;
    out.replaceChildren(h("p", null, r.normalized || r.address, " ", badge(r.verdict)),
      r.suggestion ? h("p", null, t("ops.suggestion", { s: r.suggestion })) : "",
      r.reasons?.length ? h("ul", null, r.reasons.map(x => h("li", null, String(x)))) : "",
      h("p", { class: "muted" }, Object.entries(r.flags || {}).filter(([, v]) => v).map(([k]) => k).join(", ")));
  } }, h("div", { class: "row" }, field(t("ops.address"), addr), h("button", { type: "submit" }, t("ops.verifybtn"))), out);
}

async function queue(box) {
  const msg = h("div");
  const [stats, page] = await Promise.all([run(msg, () => api("GET", "/api/v1/queue/stats")), run(msg, () => api("GET", "/api/v1/queue?limit=500"))]);
  const act = (path, body) => async () => { if (await run(msg, () => api("POST", "/api/v1/queue/" + path, body))) { box.replaceChildren(); queue(box); } };
  box.append(msg);
  if (stats) box.append(h("div", { class: "cards" }, Object.entries(stats).filter(([, v]) => typeof v === "number").map(([k, v]) =>
    h("div", { class: "stat" }, h("div", { class: "muted" }, k), h("div", { class: "v" }, fmtNum(v))))));
  box.append(h("div", { class: "row" }, button(t("ops.flushall"), act("flush", {}), { class: "secondary" }), button(t("ops.holdall"), act("hold", { all: true }), { class: "secondary" }),
    button(t("ops.releaseall"), act("release", { all: true }), { class: "secondary" })));
  const rs = page?.recipients || page?.entries || [];
  const byDomain = new Map();
  for (const r of rs) {
    const d = (r.recipient || "").split("@")[1] || "?";
    if (!byDomain.has(d)) byDomain.set(d, []);
    byDomain.get(d).push(r);
  }
  if (!rs.length) { box.append(h("p", { class: "muted" }, t("ops.empty"))); return; }
  for (const [d, list] of byDomain) {
    box.append(h("h3", null, `${d} (${fmtNum(list.length)})`, " ", button(t("ops.flush"), act("flush", { domain: d }), { class: "secondary" })),
      table([t("ops.message"), t("ops.recipient"), t("ops.state"), t("ops.next"), ""], list.map(r => h("tr", null, h("td", { class: "mono" }, r.id), h("td", null, r.recipient),
        h("td", null, badge(r.state)), h("td", null, fmtDate(r.next_attempt)),
        h("td", null, button(t("ops.hold"), act("hold", { id: r.id }), { class: "secondary" }), " ", button(t("ops.release"), act("release", { id: r.id }), { class: "secondary" }), " ",
          button(t("ops.delete"), act("delete", { id: r.id }), { class: "danger" }))))));
  }
}

async function suppressions(box) {
  const msg = h("div");
  const stream = select({ id: "supp-stream" }, [["", t("ops.allstreams")], "transactional", "marketing"]);
  const q = input({ id: "supp-search", type: "search", placeholder: "someone@example.com" });
  const list = h("div");
  const cursors = [""];
  let page = 0;
  async function load() {
    let entries = [], next = "";
    if (q.value.trim()) {
      for (const s of stream.value ? [stream.value] : ["transactional", "marketing"]) {
        try { entries.push(await api("GET", `/api/v1/suppressions/${encodeURIComponent(s)}/${encodeURIComponent(q.value.trim())}`)); } catch { /* not suppressed there */ }
      }
    } else {
      const p = new URLSearchParams({ limit: "50" });
      if (stream.value) p.set("stream", stream.value);
      if (cursors[page]) p.set("after", cursors[page]);
      const r = await run(msg, () => api("GET", "/api/v1/suppressions?" + p));
      entries = r?.entries || []; next = r?.next || "";
      cursors[page + 1] = next;
    }
    list.replaceChildren(...[table([t("ops.address"), t("camp.stream"), t("ops.reason"), t("ops.source"), t("ops.time"), ""], entries.map(e =>
      h("tr", null, h("td", null, e.address), h("td", null, e.stream), h("td", null, e.reason), h("td", null, e.source), h("td", null, fmtDate(e.time)),
        h("td", null, can(true) ? button(t("ops.remove"), async () => {
          if (await run(msg, () => api("DELETE", `/api/v1/suppressions/${encodeURIComponent(e.stream)}/${encodeURIComponent(e.address)}`))) load();
        }, { class: "danger" }) : null)))),
    entries.length ? null : h("p", { class: "muted" }, t("ops.nosupp")),
    q.value.trim() ? null : h("div", { class: "row" }, button(t("prev"), () => { page--; load(); }, { class: "secondary", disabled: page === 0 }),
      button(t("next"), () => { page++; load(); }, { class: "secondary", disabled: !next }))].filter(Boolean));
  }
  q.addEventListener("change", () => { page = 0; load(); });
  stream.addEventListener("change", () => { page = 0; load(); });
  const exp = h("a", { id: "supp-export", href: "/api/v1/suppressions/export", download: "suppressions.csv" }, t("ops.export"));
  const exportHref = () => {
    exp.href = "/api/v1/suppressions/export" + (stream.value ? "?stream=" + encodeURIComponent(stream.value) : "");
    exp.setAttribute("download", "suppressions" + (stream.value ? "-" + stream.value : "") + ".csv");
  };
  stream.addEventListener("change", exportHref);
  box.append(h("div", { class: "row" }, field(t("ops.search"), q), field(t("camp.stream"), stream), button(t("ops.find"), () => { page = 0; load(); }, { class: "secondary" })), msg, list,
    h("p", null, exp));
  if (can(true)) {
    const addr = input({ id: "supp-add-address", type: "email", required: true });
    const st = select({ id: "supp-add-stream" }, ["transactional", "marketing"]);
    const reason = select({ id: "supp-add-reason" }, ["manual", "unsubscribe", "hard_bounce", "complaint"]);
    box.append(h("form", { id: "supp-add", onsubmit: async e => {
      e.preventDefault();
      if (await run(msg, () => api("POST", "/api/v1/suppressions", { address: addr.value, stream: st.value, reason: reason.value }))) { e.target.reset(); load(); }
    } }, h("div", { class: "row" }, field(t("ops.address"), addr), field(t("camp.stream"), st), field(t("ops.reason"), reason), h("button", { type: "submit" }, t("ops.add")))));
  }
  if (me()?.role === "owner") box.append(importForm(load));
  await load();
}

// importForm uploads a CSV file or pasted rows to the suppression import
// (rows address[,stream[,reason[,source[,time]]]]), skipping invalid rows,
// and shows what was imported and skipped, with each row's error.
function importForm(reload) {
  const file = input({ id: "supp-import-file", type: "file", accept: ".csv,text/csv,text/plain" });
  const paste = h("textarea", { id: "supp-import-paste", rows: 4, placeholder: "someone@example.com,marketing,unsubscribe" });
  const source = input({ id: "supp-import-source", placeholder: "import" });
  const out = h("div", { id: "supp-import-result", "aria-live": "polite" });
  return h("form", { id: "supp-import", onsubmit: async e => {
    e.preventDefault();
    const body = file.files[0] || (paste.value.trim() ? new Blob([paste.value], { type: "text/csv" }) : null);
    if (!body) { out.replaceChildren(message("error", t("ops.import.none"))); return; }
    out.replaceChildren(h("p", { class: "muted" }, t("ops.import.running")));
    const p = new URLSearchParams({ on_error: "skip" });
    if (source.value.trim()) p.set("source", source.value.trim());
    const r = await run(out, () => api("POST", "/api/v1/suppressions/import?" + p, body.type ? body : new Blob([body], { type: "text/csv" })));
    if (!r) return;
    e.target.reset();
    out.replaceChildren(...[message(r.skipped ? "error" : "ok", t("ops.import.done", { imported: fmtNum(r.imported), skipped: fmtNum(r.skipped) })),
      r.errors?.length ? table([t("ops.import.line"), t("ops.import.error")], r.errors.map(x => h("tr", null, h("td", { class: "num" }, fmtNum(x.line)), h("td", null, x.message))),
        { id: "supp-import-errors" }) : null,
      r.skipped > (r.errors?.length || 0) ? h("p", { class: "muted" }, t("ops.import.more", { n: fmtNum(r.skipped - r.errors.length) })) : null].filter(Boolean));
    if (r.imported) reload();
  } }, h("h3", null, t("ops.import")), h("p", { class: "muted" }, t("ops.import.help")),
    h("div", { class: "row" }, field(t("ops.import.file"), file), field(t("ops.import.source"), source)),
    field(t("ops.import.paste"), paste), h("button", { type: "submit", id: "supp-import-submit" }, t("ops.import.submit")), out);
}
