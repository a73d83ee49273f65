import { h, t, field, input, select, api, run, button, badge, table, message, go, can, fmtDate, fmtNum, every } from "../app.js";

const defaults = ["name", "phone", "gender", "birthday", "age", "time_zone", "locale"];

export async function render(view, [aid, tab, sub]) {
  if (!aid) return list(view);
  const box = h("div");
  const a = await run(box, () => api("GET", "/api/v1/audiences/" + aid));
  view.append(h("p", null, h("a", { href: "#/audiences" }, "← " + t("aud.title"))));
  if (!a) { view.append(box); return; }
  view.append(h("h1", null, a.name), h("nav", { class: "tabs", "aria-label": t("aud.sections") },
    [["", "aud.contacts"], ["import", "aud.import"], ["fields", "aud.fields"], ["segments", "aud.segments"]].map(([k, key]) =>
      h("a", { href: `#/audiences/${aid}${k ? "/" + k : ""}`, "aria-current": (tab || "") === k ? "page" : undefined }, t(key)))), box);
  switch (tab || "") {
    case "import": return sub ? importProgress(view, a, sub) : importWizard(view, a);
    case "fields": return fields(view, a);
    case "segments": return segments(view, a);
    default: return contacts(view, a);
  }
}

async function list(view) {
  view.append(h("h1", null, t("aud.title")));
  const box = h("div");
  if (can(true)) {
    const name = input({ required: true, id: "aud-name" });
    view.append(h("form", { id: "aud-add", onsubmit: async e => {
      e.preventDefault();
      const a = await run(box, () => api("POST", "/api/v1/audiences", { name: name.value }));
      if (a) go("#/audiences/" + a.id);
    } }, h("div", { class: "row" }, field(t("aud.new"), name), h("button", { type: "submit" }, t("create")))));
  }
  view.append(box);
  const r = await run(box, () => api("GET", "/api/v1/audiences"));
  if (!r) return;
  const as = r.audiences || [];
  if (!as.length) { view.append(h("p", { class: "muted" }, t("aud.none"))); return; }
  view.append(table([t("aud.name"), t("aud.fields"), t("created")], as.map(a =>
    h("tr", null, h("td", null, h("a", { href: "#/audiences/" + a.id }, a.name)), h("td", { class: "num" }, fmtNum((a.fields || []).length)), h("td", null, fmtDate(a.created_at))))));
}

// celString quotes s as a CEL string literal.
function celString(s) { return JSON.stringify(s); }

async function contacts(view, a) {
  const box = h("div");
  const segs = (await run(box, () => api("GET", `/api/v1/audiences/${a.id}/segments`)))?.segments || [];
  const search = input({ type: "search", id: "contact-search", placeholder: t("aud.searchhint") });
  const seg = select({ id: "contact-segment" }, [["", t("aud.allcontacts")], ...segs.map(s => [String(s.id), s.name])]);
  const tbody = h("tbody");
  const pager = h("div", { class: "row" });
  const cursors = [""];
  let page = 0;
  const selected = new Set();
  let loads = 0;
  async function load() {
    const q = new URLSearchParams({ limit: "50" });
    if (cursors[page]) q.set("after", cursors[page]);
    const term = search.value.trim();
    // A whole address is an indexed lookup; other text is a substring
    // match over email and name (a scan: slow on very large audiences).
    let where = /^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(term) ? `email == ${celString(term.toLowerCase())}`
      : term ? `email.contains(${celString(term.toLowerCase())}) || name.contains(${celString(term)})` : "";
    if (seg.value) {
      const s = segs.find(x => String(x.id) === seg.value);
      where = where ? `(${s.expression}) && (${where})` : s.expression;
    }
    if (where) q.set("where", where);
    const seq = ++loads;
    const r = await run(box, () => api("GET", `/api/v1/audiences/${a.id}/contacts?${q}`));
    if (!r || seq !== loads) return; // a newer search superseded this one
    box.replaceChildren();
    cursors[page + 1] = r.next || "";
    tbody.replaceChildren(...r.contacts.map(c => h("tr", { "data-email": c.email },
      h("td", null, can(true) ? input({ type: "checkbox", "aria-label": t("aud.select") + " " + c.email, onchange: e => e.target.checked ? selected.add(c.id) : selected.delete(c.id) }) : null),
      h("td", null, c.email), h("td", null, c.name || ""), h("td", null, badge(c.status)), h("td", null, (c.tags || []).join(", ")),
      h("td", null, Object.entries(c.fields || {}).map(([k, v]) => `${k}=${v}`).join("; ")), h("td", null, fmtDate(c.updated_at)))));
    if (!r.contacts.length) tbody.append(h("tr", null, h("td", { colspan: 7, class: "muted" }, t("aud.nocontacts"))));
    pager.replaceChildren(
      button(t("prev"), () => { page--; load(); }, { class: "secondary", disabled: page === 0, id: "page-prev" }),
      h("span", null, t("page", { n: page + 1 })),
      button(t("next"), () => { page++; load(); }, { class: "secondary", disabled: !r.next, id: "page-next" }));
  }
  let timer;
  search.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => { page = 0; load(); }, 300); });
  seg.addEventListener("change", () => { page = 0; load(); });
  view.append(h("div", { class: "row" }, field(t("aud.search"), search), field(t("aud.segment"), seg)));
  if (can(true)) {
    const tag = input({ id: "tag-name" });
    const tagAct = async op => {
      if (!selected.size || !tag.value.trim()) return;
      const r = await run(box, () => api("POST", `/api/v1/audiences/${a.id}/tags`, { contact_ids: [...selected], [op]: [tag.value.trim()] }));
      if (r) { selected.clear(); load(); }
    };
    view.append(h("div", { class: "row" }, field(t("aud.tag"), tag), button(t("aud.tagadd"), () => tagAct("add"), { class: "secondary" }),
      button(t("aud.tagremove"), () => tagAct("remove"), { class: "secondary" })));
  }
  view.append(box, h("div", { class: "scroll" }, h("table", { id: "contacts" }, h("thead", null, h("tr", null,
    [" ", t("aud.email"), t("aud.name"), t("aud.status"), t("aud.tags"), t("aud.custom"), t("updated")].map(x => h("th", { scope: "col" }, x)))), tbody)), pager);
  if (can(true)) view.append(addContact(a, load));
  await load();
}

function addContact(a, reload) {
  const box = h("div");
  const email = input({ type: "email", required: true, id: "c-email" });
  const ctl = {
    name: input({ id: "c-name" }), phone: input({ type: "tel", id: "c-phone" }),
    gender: select({ id: "c-gender" }, [["", "—"], ["female", t("g.female")], ["male", t("g.male")], ["other", t("g.other")]]),
    birthday: input({ type: "date", id: "c-birthday" }), age: input({ type: "number", min: 0, max: 150, id: "c-age" }),
  };
  const custom = {};
  for (const f of a.fields || []) {
    custom[f.name] = f.type === "enum" ? select({ id: "cf-" + f.name }, ["", ...(f.values || [])])
      : f.type === "boolean" ? select({ id: "cf-" + f.name }, [["", "—"], ["true", t("yes")], ["false", t("no")]])
      : input({ id: "cf-" + f.name, type: f.type === "number" ? "number" : f.type === "date" ? "date" : "text" });
  }
  const tags = input({ id: "c-tags", placeholder: "vip, newsletter" });
  const consent = input({ type: "checkbox", id: "c-consent" });
  return h("form", { id: "contact-add", onsubmit: async e => {
    e.preventDefault();
    const body = { email: email.value.trim(), fields: {} };
    for (const [k, c] of Object.entries(ctl)) if (c.value) body[k] = k === "age" ? Number(c.value) : c.value;
    for (const f of a.fields || []) {
      const v = custom[f.name].value;
      if (v !== "") body.fields[f.name] = f.type === "number" ? Number(v) : f.type === "boolean" ? v === "true" : v;
    }
    const tg = tags.value.split(",").map(s => s.trim()).filter(Boolean);
    if (tg.length) body.tags = tg;
    const c = await run(box, () => api("POST", `/api/v1/audiences/${a.id}/contacts`, body));
    if (!c) return;
    if (consent.checked) await run(box, () => api("POST", `/api/v1/audiences/${a.id}/contacts/${c.id}/consent`, { purpose: "marketing", action: "grant", source: "dashboard" }));
    box.replaceChildren(message("ok", t("aud.added", { email: c.email })));
    e.target.reset();
    reload();
  } }, h("h2", null, t("aud.addcontact")),
    h("div", { class: "row" }, field(t("aud.email") + " *", email), ...Object.entries(ctl).map(([k, c]) => field(t("aud." + k), c)),
      ...(a.fields || []).map(f => field(f.name, custom[f.name])), field(t("aud.tags"), tags), field(t("aud.consent"), consent, "inline")),
    box, h("button", { type: "submit" }, t("aud.addbtn")));
}

// parseHeader splits a CSV header line (RFC 4180 quoting).
export function parseHeader(text) {
  const line = [];
  let cur = "", q = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (q) {
      if (ch === '"' && text[i + 1] === '"') { cur += '"'; i++; } else if (ch === '"') q = false; else cur += ch;
    } else if (ch === '"') q = true;
    else if (ch === ",") { line.push(cur); cur = ""; }
    else if (ch === "\n" || ch === "\r") break;
    else cur += ch;
  }
  line.push(cur);
  return line.map(s => s.trim());
}

function importWizard(view, a) {
  const box = h("div");
  const file = input({ type: "file", accept: ".csv,text/csv", id: "imp-file" });
  const paste = h("textarea", { id: "imp-paste", rows: 6, placeholder: "email,name\nann@example.com,Ann" });
  const mapBox = h("div", { id: "imp-map" });
  const targets = [["", t("imp.ignore")], ["email", "email"], ...defaults.map(d => [d, d]), ["status", "status"], ["tags", "tags"], ...(a.fields || []).map(f => [f.name, f.name])];
  let header = [];
  const maps = [];
  async function preview() {
    const text = file.files[0] ? await file.files[0].slice(0, 64 << 10).text() : paste.value;
    header = text.trim() ? parseHeader(text) : [];
    maps.length = 0;
    mapBox.replaceChildren(header.length ? table([t("imp.column"), t("imp.target")], header.map(col => {
      const guess = targets.find(([v]) => v && v === col.toLowerCase())?.[0] ?? "";
      const s = select({ "aria-label": t("imp.target") + " " + col, "data-col": col }, targets.map(([v, l]) => [v, l, v === guess]));
      maps.push([col, s]);
      return h("tr", null, h("td", null, col), h("td", null, s));
    })) : h("p", { class: "muted" }, t("imp.choose")));
  }
  file.addEventListener("change", preview);
  paste.addEventListener("input", preview);
  const dup = h("fieldset", null, h("legend", null, t("imp.duplicates")),
    field(t("imp.update"), input({ type: "radio", name: "dup", value: "update", checked: true, id: "dup-update" }), "inline"),
    field(t("imp.skip"), input({ type: "radio", name: "dup", value: "skip", id: "dup-skip" }), "inline"));
  const tagMode = select({ id: "imp-tags" }, [["add", t("imp.tagsadd")], ["replace", t("imp.tagsreplace")], ["skip", t("imp.tagsskip")]]);
  const addTags = input({ id: "imp-addtags", placeholder: "imported" });
  const consent = input({ type: "checkbox", id: "imp-consent" });
  view.append(h("h2", null, t("imp.title")), h("form", { id: "import-form", onsubmit: async e => {
    e.preventDefault();
    if (!header.length) { box.replaceChildren(message("error", t("imp.choose"))); return; }
    const mapping = {};
    for (const [col, s] of maps) mapping[col] = s.value;
    const opts = { on_duplicate: view.querySelector("input[name=dup]:checked").value, tags: tagMode.value, mapping,
      add_tags: addTags.value.split(",").map(s => s.trim()).filter(Boolean) };
    if (consent.checked) { opts.consent_purpose = "marketing"; opts.consent_source = "dashboard"; }
    const fd = new FormData();
    fd.append("options", JSON.stringify(opts));
    fd.append("file", file.files[0] || new Blob([paste.value], { type: "text/csv" }), file.files[0]?.name || "pasted.csv");
    const job = await run(box, () => api("POST", `/api/v1/audiences/${a.id}/imports`, fd));
    if (job) go(`#/audiences/${a.id}/import/${job.id}`);
  } }, h("div", { class: "row" }, field(t("imp.file"), file)), field(t("imp.paste"), paste), h("h3", null, t("imp.mapping")), mapBox,
    h("div", { class: "row" }, dup, field(t("imp.tagmode"), tagMode), field(t("imp.addtags"), addTags), field(t("aud.consent"), consent, "inline")),
    box, h("button", { type: "submit", id: "imp-start" }, t("imp.start"))));
  preview();
}

async function importProgress(view, a, id) {
  const box = h("div", { id: "imp-progress" });
  view.append(h("h2", null, t("imp.progress", { id })), box);
  async function tick() {
    const j = await run(box, () => api("GET", "/api/v1/imports/" + id));
    if (!j) return false;
    const pct = j.bytes_total ? j.bytes_done / j.bytes_total : (j.state === "done" ? 1 : 0);
    box.replaceChildren(h("p", null, badge(j.state), " ", j.error || ""),
      h("progress", { class: "progress", max: 100, value: Math.round(pct * 100), "aria-label": t("imp.progressbar") }),
      h("div", { class: "cards" }, [["rows_read", j.rows_read], ["created", j.created], ["updated", j.updated], ["skipped", j.skipped], ["failed", j.failed]].map(([k, v]) =>
        h("div", { class: "stat", "data-stat": k }, h("div", { class: "muted" }, t("imp." + k)), h("div", { class: "v" }, fmtNum(v))))),
      j.failed ? h("p", null, h("a", { href: `/api/v1/imports/${id}/errors?format=csv`, download: `import-${id}-errors.csv`, id: "imp-errors" }, t("imp.errors"))) : "",
      j.state === "done" ? h("p", null, h("a", { href: `#/audiences/${a.id}` }, t("imp.seecontacts"))) : "");
    return j.state === "done" || j.state === "failed";
  }
  if (!(await tick())) every(500, tick);
}

async function fields(view, a) {
  const box = h("div");
  view.append(table([t("fld.name"), t("fld.type"), t("fld.values")], (a.fields || []).map(f =>
    h("tr", null, h("td", null, f.name), h("td", null, f.type), h("td", null, (f.values || []).join(", "))))),
    h("p", { class: "muted" }, t("fld.limit", { n: (a.fields || []).length })));
  if (!can(true)) return;
  const name = input({ required: true, pattern: "[a-z][a-z0-9_]*", id: "fld-name" });
  const type = select({ id: "fld-type" }, ["text", "number", "boolean", "date", "datetime", "enum"]);
  const values = input({ id: "fld-values", placeholder: "gold, silver" });
  view.append(h("form", { id: "field-add", onsubmit: async e => {
    e.preventDefault();
    const f = { name: name.value, type: type.value };
    if (type.value === "enum") f.values = values.value.split(",").map(s => s.trim()).filter(Boolean);
    if (await run(box, () => api("POST", `/api/v1/audiences/${a.id}/fields`, { fields: [f] }))) go(`#/audiences/${a.id}/fields`);
  } }, h("div", { class: "row" }, field(t("fld.name"), name), field(t("fld.type"), type), field(t("fld.values"), values), h("button", { type: "submit" }, t("fld.add"))), box));
}

const ops = [["==", "="], ["!=", "≠"], [">", ">"], ["<", "<"], [">=", "≥"], ["<=", "≤"], ["contains", "contains"], ["has tag", "has tag"]];

async function segments(view, a) {
  const box = h("div");
  const r = await run(box, () => api("GET", `/api/v1/audiences/${a.id}/segments`));
  const list = r?.segments || [];
  const countCells = list.map(() => h("td", { class: "num" }, "…"));
  view.append(box, table([t("seg.name"), t("seg.expr"), { label: t("seg.count"), num: true }], list.map((s, i) =>
    h("tr", null, h("td", null, s.name), h("td", null, h("code", null, s.expression)), countCells[i]))));
  // Every count in one request, one pass over the audience; the cells fill in when it answers.
  if (list.length) run(null, () => api("GET", `/api/v1/audiences/${a.id}/segments?counts=1`)).then(c => {
    const byId = new Map((c?.segments || []).map(x => [x.id, x]));
    list.forEach((s, i) => { const x = byId.get(s.id); countCells[i].textContent = x && x.count != null ? fmtNum(x.count) : "?"; });
  });
  if (!can(true)) return;
  const vars = ["email", "status", "tags", ...defaults, ...(a.fields || []).map(f => f.name)];
  const typeOf = n => (a.fields || []).find(f => f.name === n)?.type || (n === "age" ? "number" : "text");
  const rows = h("div", { id: "seg-rows" });
  const join = select({ id: "seg-join", "aria-label": t("seg.join") }, [["&&", t("seg.all")], ["||", t("seg.any")]]);
  const expr = h("textarea", { id: "seg-expr", rows: 3, "aria-label": t("seg.expr") });
  const count = h("output", { id: "seg-count", "aria-live": "polite" }, "—");
  const name = input({ id: "seg-name", required: true });
  let timer;
  function literal(v, typ) {
    if (typ === "number") return String(Number(v));
    if (typ === "boolean") return v === "true" ? "true" : "false";
    if (typ === "date" || typ === "datetime") return `timestamp(${celString(new Date(v).toISOString().replace(/\.\d+Z$/, "Z"))})`;
    return celString(v);
  }
  function build() {
    const parts = [...rows.children].map(row => {
      const [f, o, v] = row.querySelectorAll("select, input");
      if (!v.value && o.value !== "==") return "";
      if (o.value === "has tag") return `${celString(v.value)} in tags`;
      if (o.value === "contains") return `${f.value}.contains(${celString(v.value)})`;
      return `${f.value} ${o.value} ${literal(v.value, typeOf(f.value))}`;
    }).filter(Boolean);
    expr.value = parts.join(` ${join.value} `);
    live();
  }
  function live() {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      if (!expr.value.trim()) { count.textContent = "—"; return; }
      try {
        const c = await api("POST", `/api/v1/audiences/${a.id}/segments/count`, { expression: expr.value });
        count.textContent = t("seg.matches", { n: fmtNum(c.count) });
      } catch (e) { count.textContent = e.message; }
    }, 250);
  }
  function addRow() {
    const f = select({ "aria-label": t("seg.field"), onchange: build }, vars);
    const o = select({ "aria-label": t("seg.op"), onchange: build }, ops);
    const v = input({ "aria-label": t("seg.value"), oninput: build });
    rows.append(h("div", { class: "row" }, f, o, v, button("×", e => { e.target.parentElement.remove(); build(); }, { class: "secondary", "aria-label": t("seg.remove") })));
  }
  join.addEventListener("change", build);
  expr.addEventListener("input", live);
  addRow();
  view.append(h("form", { id: "segment-form", onsubmit: async e => {
    e.preventDefault();
    if (await run(box, () => api("POST", `/api/v1/audiences/${a.id}/segments`, { name: name.value, expression: expr.value }))) go(`#/audiences/${a.id}/segments`);
  } }, h("h2", null, t("seg.builder")), h("div", { class: "row" }, field(t("seg.join"), join)), rows,
    button(t("seg.addrow"), addRow, { class: "secondary", id: "seg-addrow" }),
    field(t("seg.expr"), expr), h("p", null, t("seg.live") + ": ", count),
    h("div", { class: "row" }, field(t("seg.name"), name), h("button", { type: "submit", id: "seg-save" }, t("seg.save")))));
}
