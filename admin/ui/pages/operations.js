import { h, t, field, input, select, api, run, button, badge, table, message, go, can, me, every, fmtDate, fmtNum } from "../app.js";

export async function render(view) {
  view.append(h("h1", null, t("ops.title")));
  const qbox = h("div", { id: "ops-queue" });
  const sbox = h("div", { id: "ops-supp" });
  const shbox = h("div", { id: "ops-shaping" });
  const whbox = h("div", { id: "ops-webhooks" });
  const vjbox = h("div", { id: "ops-verify-jobs" });
  view.append(h("h2", null, t("ops.queue")), qbox, h("h2", null, t("ops.shaping")), shbox, h("h2", null, t("ops.suppressions")), sbox,
    h("h2", null, t("ops.webhooks")), whbox, h("h2", null, t("ops.verify")), verify(), h("h3", null, t("ops.vjobs")), vjbox);
  await Promise.all([queue(qbox), suppressions(sbox), shaping(shbox), webhooks(whbox), verifyJobs(vjbox)]);
}

// shaping shows the shaper's state: paused streams (with Resume), the
// automation actions in force (throttle, suspend on remote replies),
// warm-up counts against their caps, and the limits that are reduced.
async function shaping(box) {
  const msg = h("div");
  box.append(msg);
  const st = await run(msg, () => api("GET", "/api/v1/policy/status"));
  if (!st) return;
  const paused = st.paused || [], actions = st.actions || [], warm = st.warmup || [];
  const reduced = (st.limits || []).filter(l => l.throttle_factor || l.suspended || l.bouncing);
  box.append(h("div", { class: "cards" }, [["ops.sh.paused", paused.length], ["ops.sh.actions", actions.length], ["ops.sh.limits", (st.limits || []).length], ["ops.sh.warmup", warm.length]].map(([k, v]) =>
    h("div", { class: "stat", "data-stat": k }, h("div", { class: "muted" }, t(k)), h("div", { class: "v" }, fmtNum(v))))));
  if (paused.length) box.append(h("h3", null, t("ops.sh.paused")), table([t("camp.stream"), t("ops.reason"), ""], paused.map(p => h("tr", null, h("td", null, p.stream), h("td", null, p.reason || ""),
    h("td", null, me()?.role === "owner" ? button(t("ops.sh.resume"), async () => {
      if (await run(msg, () => api("POST", "/api/v1/streams/" + encodeURIComponent(p.stream) + "/resume"))) { box.replaceChildren(); shaping(box); }
    }, { class: "secondary" }) : "")))));
  box.append(h("h3", null, t("ops.sh.actions")), actions.length ? table([t("ops.sh.action"), t("camp.stream"), t("ops.sh.source"), t("ops.sh.key"), t("ops.sh.until"), t("ops.sh.reply")],
    actions.map(a => h("tr", null, h("td", null, badge(a.action), a.factor ? " ×" + fmtNum(a.factor) : ""), h("td", null, a.stream), h("td", null, a.source), h("td", { class: "mono" }, a.key),
      h("td", null, fmtDate(a.until)), h("td", null, a.reply || ""))), { id: "ops-actions" }) : h("p", { class: "muted" }, t("ops.sh.noactions")));
  if (reduced.length) box.append(h("h3", null, t("ops.sh.reduced")), table([t("camp.stream"), t("ops.sh.source"), t("ops.sh.key"), { label: t("ops.sh.rate"), num: true }, t("ops.state")],
    reduced.map(l => h("tr", null, h("td", null, l.stream), h("td", null, l.source), h("td", { class: "mono" }, l.key), h("td", { class: "num" }, String(l.max_message_rate ?? "")),
      h("td", null, l.suspended ? badge("suspended") : l.bouncing ? badge("bouncing") : "×" + fmtNum(l.throttle_factor))))));
  if (warm.length) box.append(h("h3", null, t("ops.sh.warmup")), table([t("ops.sh.source"), t("ops.sh.rule"), { label: t("ops.sh.sent"), num: true }, { label: t("ops.sh.cap"), num: true }],
    warm.map(w => h("tr", null, h("td", null, w.source), h("td", null, w.rule), h("td", { class: "num" }, fmtNum(w.sent)), h("td", { class: "num" }, fmtNum(w.cap))))));
}

// webhooks shows each configured webhook's delivery state.
async function webhooks(box) {
  const r = await run(box, () => api("GET", "/api/v1/webhooks"));
  if (!r) return;
  const ws = r.webhooks || [];
  box.append(ws.length ? table([t("ops.wh.name"), t("ops.wh.url"), t("ops.wh.events"), { label: t("ops.wh.delivered"), num: true }, { label: t("ops.wh.failed"), num: true },
    { label: t("ops.wh.lag"), num: true }, t("ops.wh.last"), t("ops.wh.error")], ws.map(w => h("tr", null, h("td", null, w.name), h("td", { class: "mono" }, w.url), h("td", null, (w.events || []).join(", ") || t("keys.any")),
    h("td", { class: "num" }, fmtNum(w.delivered)), h("td", { class: "num" }, fmtNum(w.failed_attempts)), h("td", { class: "num" }, fmtNum(w.lag_seconds, { maximumFractionDigits: 1 }) + " s"),
    h("td", null, fmtDate(w.last_delivered_at)), h("td", null, w.last_error ? `${w.last_error} (${fmtDate(w.last_error_at)})` : ""))), { id: "ops-webhook-table" })
    : h("p", { class: "muted" }, t("ops.wh.none")));
}

// verifyJobs starts a bulk verification (a file or pasted addresses) and
// shows every job with its progress, verdicts and result downloads,
// refreshed while one runs.
async function verifyJobs(box) {
  const msg = h("div");
  const list = h("div", { id: "vjob-list" });
  let timer = false;
  async function load() {
    const jobs = await run(msg, () => api("GET", "/api/v1/verify/jobs"));
    if (!jobs) return false;
    list.replaceChildren(jobs.length ? table([t("ops.vj.id"), t("ops.state"), t("ops.vj.progress"), t("ops.vj.verdicts"), t("created"), ""], jobs.map(j => {
      const pct = j.total ? j.done / j.total : 1;
      return h("tr", { "data-job": j.id }, h("td", { class: "mono" }, j.id), h("td", null, badge(j.state)),
        h("td", null, h("progress", { class: "progress", max: 100, value: Math.round(pct * 100), "aria-label": t("ops.vj.progress") + " " + j.id }), " ",
          h("span", { class: "vj-count" }, `${fmtNum(j.done)} / ${fmtNum(j.total)}`)),
        h("td", null, Object.entries(j.verdicts || {}).map(([k, v]) => `${t("state." + k)} ${fmtNum(v)}`).join(", ")),
        h("td", null, fmtDate(j.created)),
        h("td", null, ["valid", "risky", "invalid"].map(b => h("a", { href: `/api/v1/verify/jobs/${encodeURIComponent(j.id)}/results?format=csv&bucket=${b}`, download: `verify-${j.id}-${b}.csv` }, t("ops.vj." + b))).flatMap((a, i) => i ? [" · ", a] : [a])));
    }), { id: "vjob-table" }) : h("p", { class: "muted" }, t("ops.vj.none")));
    const running = jobs.some(j => j.state !== "done" && j.state !== "failed");
    if (running && !timer) { timer = true; every(1000, load); }
    return running;
  }
  if (me()?.role === "owner") {
    const file = input({ id: "vjob-file", type: "file", accept: ".csv,.txt,text/csv,text/plain" });
    const paste = h("textarea", { id: "vjob-paste", rows: 3, placeholder: "one@example.com" });
    box.append(h("form", { id: "vjob-form", onsubmit: async e => {
      e.preventDefault();
      const src = file.files[0] || (paste.value.trim() ? paste.value : null);
      if (!src) { msg.replaceChildren(message("error", t("ops.import.none"))); return; }
      const job = await run(msg, () => api("POST", "/api/v1/verify/jobs", new Blob([src], { type: "text/csv" })));
      if (!job) return;
      e.target.reset();
      msg.replaceChildren(message("ok", t("ops.vj.started", { id: job.id, n: fmtNum(job.total) })));
      load();
    } }, h("p", { class: "muted" }, t("ops.vj.help")), h("div", { class: "row" }, field(t("ops.import.file"), file)), field(t("ops.vj.paste"), paste),
      h("button", { type: "submit", id: "vjob-submit" }, t("ops.vj.start"))));
  }
  box.append(msg, list);
  await load();
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

// queue shows the queue's counts and its live recipients a page of 100 at
// a time (keyset paging: the API's next cursor), grouped by domain.
async function queue(box, cursors = [""], n = 0) {
  const msg = h("div");
  const p = new URLSearchParams({ limit: "100" });
  if (cursors[n]) p.set("after", cursors[n]);
  const [stats, page] = await Promise.all([run(msg, () => api("GET", "/api/v1/queue/stats")), run(msg, () => api("GET", "/api/v1/queue?" + p))]);
  const act = (path, body) => async () => { if (await run(msg, () => api("POST", "/api/v1/queue/" + path, body))) { box.replaceChildren(); queue(box, cursors, n); } };
  const turn = to => () => { box.replaceChildren(); queue(box, cursors, to); };
  if (page?.next) cursors[n + 1] = page.next;
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
  if (!rs.length && n === 0) { box.append(h("p", { class: "muted" }, t("ops.empty"))); return; }
  box.append(h("div", { class: "row", id: "queue-pager" }, button(t("prev"), turn(n - 1), { class: "secondary", disabled: n === 0, id: "queue-prev" }),
    h("span", null, t("page", { n: n + 1 })), button(t("next"), turn(n + 1), { class: "secondary", disabled: !page?.next, id: "queue-next" })));
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
