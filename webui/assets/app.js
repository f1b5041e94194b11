// runnerd's web UI: the runs list and the run page, drawn from the JSON API
// under /api/v1/. Plain DOM code, no framework.
"use strict";

const API = "/api/v1";

// ---- helpers ---------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// api calls the JSON API; a failure throws an Error whose message is the
// API's, which is the CLI's.
async function api(path, opts) {
  const o = Object.assign({ credentials: "same-origin", headers: {} }, opts || {});
  if (o.body !== undefined) {
    o.headers["Content-Type"] = "application/json";
    o.body = JSON.stringify(o.body);
  } else if (o.method === "POST") {
    o.headers["Content-Type"] = "application/json";
  }
  const res = await fetch(API + path, o);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!res.ok) {
    throw new Error((data && data.error) || `${res.status} ${res.statusText}`);
  }
  return data;
}

function badge(status) {
  return h("span", { class: `badge s-${status}`, "data-status": status }, status);
}

function pad(n) { return String(n).padStart(2, "0"); }

function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (isNaN(d)) return "–";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function timeCell(iso) {
  return h("time", { datetime: iso || "", title: iso || "" }, fmtTime(iso));
}

// waitingText says why a run waits, as runnerd status does: a claimed
// run's runner waits for a server ({on, since, error}); a queued run waits
// in its concurrency group's or tenant's line, or for a runner slot.
function waitingText(w) {
  if (w.on) return `for ${w.on} since ${fmtTime(w.since)}: ${w.error || ""}`;
  let pos = w.at_least ? `more than ${w.position - 1} runs ahead` : `position ${w.position}`;
  if (w.of > 0) pos += ` of ${w.of}`;
  if (w.kind === "concurrency_group") return `in concurrency group "${w.name}", ${pos}`;
  if (w.kind === "tenant_limit") return `for tenant "${w.name}"'s limit${w.limit > 0 ? ` of ${w.limit}` : ""}, ${pos}`;
  return `for a free runner slot, ${pos}`;
}

function fmtDuration(ms) {
  if (ms === undefined || ms === null || isNaN(ms) || ms < 0) return "–";
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)}s`;
  const m = Math.floor(s / 60), rs = Math.round(s % 60);
  if (m < 60) return `${m}m${pad(rs)}s`;
  return `${Math.floor(m / 60)}h${pad(m % 60)}m`;
}

function between(a, b) {
  if (!a || !b) return undefined;
  return new Date(b) - new Date(a);
}

function dash(s) { return s === undefined || s === null || s === "" ? "–" : s; }

function settled(status) {
  return ["succeeded", "failed", "cancelled", "paused"].includes(status);
}

function errorBox(msg) { return h("div", { class: "error", role: "alert" }, msg); }

// ---- runs list -------------------------------------------------------------

const STATUSES = ["queued", "running", "paused", "succeeded", "failed", "cancelled"];
// Runs per page of the list, and how long a page with a filter few runs
// match goes on looking for them.
const PAGE_RUNS = 50, FILL_MS = 2000;

async function listPage(main) {
  const q = new URLSearchParams(location.search);
  const status = q.get("status") || "", tenant = q.get("tenant") || "", cursor = q.get("cursor") || "";
  document.title = "runnerd: runs";
  const form = h("form", { class: "filters", method: "get", action: "/" },
    h("label", {}, "status", h("select", { name: "status", id: "f-status" },
      h("option", { value: "" }, "any"),
      STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)))),
    h("label", {}, "tenant", h("input", { name: "tenant", id: "f-tenant", value: tenant, placeholder: "any", size: 16 })),
    h("button", { type: "submit", class: "primary" }, "Filter"),
    (status || tenant) ? h("a", { href: "/" }, "clear") : null,
    h("label", { class: "auto" }, "auto-refresh",
      h("input", { type: "checkbox", id: "f-auto", checked: !cursor })));
  const box = h("div", { id: "runs" }, h("p", { class: "muted" }, "Loading…"));
  main.replaceChildren(h("h1", {}, "Runs"), form, box);

  const p = new URLSearchParams();
  if (status) p.set("status", status);
  if (tenant) p.set("tenant", tenant);
  if (cursor) p.set("cursor", cursor);
  let loading = false;
  async function load() {
    loading = true;
    try {
      await fill();
    } finally {
      loading = false;
    }
  }
  // A page of the API can be short, even empty, and still have a next one:
  // the store stops looking at its time budget (a filter few runs match).
  // The first answer is drawn at once; then the following pages are asked
  // for, for up to FILL_MS, until the table holds PAGE_RUNS runs.
  async function fill() {
    const runs = [];
    let next = cursor, first = true;
    const started = Date.now();
    while (first || (next && runs.length < PAGE_RUNS && Date.now() - started < FILL_MS)) {
      const q = new URLSearchParams(p);
      q.set("limit", PAGE_RUNS - runs.length);
      if (next) q.set("cursor", next); else q.delete("cursor");
      let page;
      try {
        page = await api(`/runs?${q}`);
      } catch (e) {
        if (first) box.replaceChildren(errorBox(`list: ${e.message}`));
        return;
      }
      runs.push(...page.runs);
      next = page.next || "";
      first = false;
      const looking = next && runs.length < PAGE_RUNS && Date.now() - started < FILL_MS;
      const table = runs.length ? runsTable(runs)
        : next ? h("p", { class: "muted", id: "no-runs" }, "No matching runs among those looked at so far.")
          : runsTable(runs);
      box.replaceChildren(...[table,
        looking && h("p", { class: "muted", id: "looking" }, "Looking through older runs…"),
        pager(next, p)].filter(Boolean));
    }
  }
  await load();
  const tick = () => {
    if (document.getElementById("f-auto").checked && !document.hidden && !loading) load();
  };
  let timer = setInterval(tick, 3000);
  window.addEventListener("pagehide", () => clearInterval(timer));
  // Back from the back-forward cache: the timer was stopped on the way out.
  window.addEventListener("pageshow", (e) => {
    if (!e.persisted) return;
    clearInterval(timer);
    timer = setInterval(tick, 3000);
    tick();
  });
}

function runsTable(runs) {
  if (!runs.length) return h("p", { class: "muted", id: "no-runs" }, "No runs.");
  return h("table", { id: "runs-table" },
    h("thead", {}, h("tr", {}, ["run", "status", "reason", "tenant", "workflow", "attempt", "created", "started", "finished", "took"].map((c) => h("th", {}, c)))),
    h("tbody", {}, runs.map((r) => h("tr", { "data-run": r.id, class: "clickable", onclick: (e) => { if (e.target.tagName !== "A") location.href = `/runs/${encodeURIComponent(r.id)}`; } },
      h("td", { class: "mono" }, h("a", { href: `/runs/${encodeURIComponent(r.id)}` }, r.id)),
      h("td", {}, badge(r.status)),
      h("td", {}, dash(r.reason)),
      h("td", {}, dash(r.tenant_id)),
      h("td", {}, dash(r.workflow)),
      h("td", { class: "num" }, r.attempt),
      h("td", {}, timeCell(r.created_at)),
      h("td", {}, timeCell(r.started_at)),
      h("td", {}, timeCell(r.finished_at)),
      h("td", { class: "num" }, fmtDuration(between(r.created_at, r.finished_at)))))));
}

function pager(next, p) {
  const first = new URLSearchParams(p);
  first.delete("cursor");
  const links = [];
  if (p.get("cursor")) links.push(h("a", { href: `/?${first}` }, "« newest"));
  if (next) {
    const n = new URLSearchParams(p);
    n.set("cursor", next);
    links.push(h("a", { href: `/?${n}`, id: "older" }, "older »"));
  }
  return h("div", { class: "pager" }, links);
}

// ---- run page --------------------------------------------------------------

class RunView {
  constructor(main, id) {
    this.main = main;
    this.id = id;
    this.doc = null;       // the run document (GET /runs/{id})
    this.seq = 0;          // last event seq received
    this.events = [];      // non-log events, for the events table
    this.live = {};        // step id -> log text received as events
    this.stored = {};      // step id -> {key, text} read from S3
    this.selected = null;  // the step whose log is shown
    this.pinned = false;   // the user chose the step
    this.source = null;    // the EventSource
  }

  async start() {
    document.getElementById("crumb").textContent = this.id;
    document.title = `runnerd: ${this.id}`;
    try {
      this.doc = await api(`/runs/${encodeURIComponent(this.id)}`);
    } catch (e) {
      this.main.replaceChildren(h("h1", {}, `Run ${this.id}`), errorBox(`status: ${e.message}`));
      return;
    }
    this.layout();
    this.render();
    // A settled run does not move: its page needs no stream, and its
    // events (which on FerretDB cost a scan) load when asked for.
    if (settled(this.doc.status)) {
      this.setLive(false);
      this.seq = this.doc.event_seq || 0;
      this.eventsLoaded = false;
      this.renderEvents();
    } else {
      this.eventsLoaded = true;
      this.connect();
    }
    // Leaving the page closes its stream: Firefox reports a stream that a
    // navigation cuts as an error of the page. Should the page stay (a
    // navigation that was a download) or come back from the back-forward
    // cache, it follows the run again from the last event it has.
    const resume = () => {
      if (this.reconnect) {
        this.reconnect = false;
        this.connect();
      }
    };
    window.addEventListener("beforeunload", () => {
      if (!this.source) return;
      this.source.close();
      this.source = null;
      this.reconnect = true;
      setTimeout(resume, 3000);
    });
    window.addEventListener("pageshow", (e) => { if (e.persisted) resume(); });
  }

  // loadEvents reads the run's events up to the last one seen, page by
  // page, for the events table (log events fill the steps' live logs).
  async loadEvents() {
    const upto = this.seq;
    const older = [];
    let after = 0;
    this.el.events.replaceChildren(h("p", { class: "muted" }, "Loading events…"));
    try {
      for (;;) {
        const page = await api(`/runs/${encodeURIComponent(this.id)}/events?after=${after}&limit=1000`);
        for (const e of page.events) {
          if (e.seq > upto) break;
          if (e.type === "log") {
            if (!this.stored[e.step]) this.live[e.step] = (this.live[e.step] || "") + (e.text || "");
          } else {
            older.push(e);
          }
          after = e.seq;
        }
        if (!page.more || after >= upto) break;
      }
    } catch (e) {
      this.el.events.replaceChildren(errorBox(`events: ${e.message}`));
      return;
    }
    this.events = older.concat(this.events.filter((e) => e.seq > upto));
    this.eventsLoaded = true;
    this.renderEvents();
  }

  get steps() { return (this.doc.workflow && this.doc.workflow.steps) || []; }

  layout() {
    this.el = {
      head: h("div", { id: "run-head" }),
      actions: h("div", { class: "actions", id: "actions" }),
      message: h("div", { id: "action-result" }),
      resume: h("div", { id: "resume" }),
      dag: h("div", { class: "dag", id: "dag" }),
      steps: h("div", { id: "steps" }),
      logbar: h("div", { class: "logbar" }),
      log: h("pre", { class: "log", id: "log", "aria-live": "polite" }),
      artifacts: h("div", { id: "artifacts" }),
      events: h("div", { id: "events" }),
    };
    const e = this.el;
    this.main.replaceChildren(
      h("h1", {}, "Run ", h("span", { class: "mono" }, this.id)),
      e.head, e.actions, e.message, e.resume,
      h("h2", {}, "Steps"), e.dag, h("div", { class: "gap" }), e.steps,
      h("div", { class: "layout two" },
        h("section", {}, h("h2", {}, "Log"), e.logbar, e.log),
        h("section", {}, h("h2", {}, "Artifacts"), e.artifacts, h("h2", {}, "Events"), e.events)));
  }

  // apply takes a run summary from the stream into the document.
  apply(sum) {
    // Where a queued run waits in line comes with the document (from NATS),
    // not with the summaries: it stays while the run is still queued.
    const line = this.doc.waiting && this.doc.waiting.kind && sum.status === "queued" && !sum.waiting
      ? { waiting: this.doc.waiting, reason: this.doc.reason } : null;
    for (const k of ["status", "reason", "attempt", "crashes", "runner_id", "cancel_requested", "waiting", "event_seq", "updated_at", "started_at", "finished_at"]) {
      this.doc[k] = sum[k];
    }
    if (line) {
      this.doc.waiting = line.waiting;
      this.doc.reason = sum.reason || line.reason;
    }
    this.doc.steps = sum.steps || {};
    this.doc.artifacts = [];
    for (const s of this.steps) {
      for (const p of ((this.doc.steps[s.id] || {}).artifacts || [])) {
        this.doc.artifacts.push({ step: s.id, path: p, url: `${API}/runs/${encodeURIComponent(this.id)}/artifacts/${encodeURIComponent(s.id)}/${p.split("/").map(encodeURIComponent).join("/")}` });
      }
    }
  }

  connect() {
    if (this.source) this.source.close();
    const es = new EventSource(`${API}/runs/${encodeURIComponent(this.id)}/events/stream?after=${this.seq}`);
    this.source = es;
    this.setLive(true);
    es.addEventListener("run", (m) => { this.apply(JSON.parse(m.data)); this.render(); });
    es.addEventListener("event", (m) => this.onEvent(JSON.parse(m.data)));
    es.addEventListener("settled", (m) => {
      es.close();
      this.source = null;
      this.apply(JSON.parse(m.data));
      this.setLive(false);
      this.render();
    });
    es.addEventListener("error", (m) => {
      // A message named "error" is the server's; a plain error event is
      // the connection's (EventSource reconnects by itself).
      if (m.data) {
        this.el.message.replaceChildren(errorBox(`follow: ${JSON.parse(m.data).error}`));
      }
    });
  }

  setLive(on) {
    this.liveOn = on;
    document.body.dataset.live = on ? "1" : "0";
  }

  onEvent(e) {
    if (e.seq <= this.seq) return;
    this.seq = e.seq;
    if (e.type === "log") {
      this.live[e.step] = (this.live[e.step] || "") + (e.text || "");
      if (!this.pinned && this.selected !== e.step && this.stepState(e.step).status === "running") {
        this.selected = e.step;
        this.renderLog();
      } else if (this.selected === e.step && !this.stored[e.step]) {
        this.el.log.append(e.text || "");
        this.el.log.scrollTop = this.el.log.scrollHeight;
      }
      return;
    }
    if (e.type === "step_started" && e.step) {
      this.live[e.step] = "";
      delete this.stored[e.step];
    }
    this.events.push(e);
    this.renderEvents();
  }

  stepState(id) { return (this.doc.steps || {})[id] || { status: "pending" }; }

  render() {
    this.renderHead();
    this.renderActions();
    this.renderResume();
    if (!this.selected || !this.pinned) this.selected = this.defaultStep();
    drawDAG(this.el.dag, this.steps, this.doc.steps || {}, this.selected, (id) => this.select(id));
    this.renderSteps();
    this.renderLog();
    this.renderArtifacts();
    this.renderEvents();
  }

  defaultStep() {
    const order = this.steps.map((s) => s.id);
    const by = (st) => order.find((id) => this.stepState(id).status === st);
    return by("running") || by("waiting") || by("failed") ||
      [...order].reverse().find((id) => this.stepState(id).log_key || this.live[id]) || order[0] || null;
  }

  select(id) {
    this.selected = id;
    this.pinned = true;
    drawDAG(this.el.dag, this.steps, this.doc.steps || {}, this.selected, (s) => this.select(s));
    this.renderSteps();
    this.renderLog();
  }

  renderHead() {
    const d = this.doc;
    const wf = d.workflow || {};
    let statusLine = [badge(d.status)];
    if (d.reason) statusLine.push(" ", h("span", { id: "run-reason" }, d.reason));
    if (d.cancel_requested && !["succeeded", "failed", "cancelled"].includes(d.status)) statusLine.push(" · cancel requested");
    if (this.liveOn) statusLine.push(h("span", { class: "muted", id: "live" }, " · live"));
    const rows = [
      ["status", h("span", { id: "run-status" }, statusLine)], ["workflow", dash(wf.name)],
      ["tenant", dash(d.tenant_id)], ["attempt", String(d.attempt) + (d.crashes ? ` (${d.crashes} crashed)` : "")],
      ["created", timeCell(d.created_at)], ["started", timeCell(d.started_at)],
      ["finished", timeCell(d.finished_at)], ["took", fmtDuration(between(d.created_at, d.finished_at))],
      ["runner", dash(d.runner_id)], ["vars", Object.keys(d.vars || {}).length ? Object.entries(d.vars).map(([k, v]) => `${k}=${v}`).join("  ") : "–"],
    ];
    if (d.waiting && !["succeeded", "failed", "cancelled"].includes(d.status)) {
      rows.push(["waiting", h("span", { id: "run-waiting" }, waitingText(d.waiting))]);
    }
    this.el.head.replaceChildren(h("dl", { class: "summary card" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
  }

  renderActions() {
    const s = this.doc.status;
    const btns = [];
    if (!["succeeded", "failed", "cancelled"].includes(s)) {
      btns.push(h("button", { class: "danger", id: "cancel", onclick: () => this.act("cancel", "cancel", undefined, `Cancel run ${this.id}?`) }, "Cancel run"));
    }
    if (s === "failed" || s === "cancelled") {
      btns.push(h("button", { id: "retry", onclick: () => this.act("retry", "retry", { from_scratch: false }) }, "Retry"));
      btns.push(h("button", { id: "retry-scratch", onclick: () => this.act("retry", "retry", { from_scratch: true }, "Run every step again, succeeded ones included?") }, "Retry from scratch"));
    }
    this.el.actions.replaceChildren(...btns);
  }

  renderResume() {
    if (this.doc.status !== "paused") {
      this.el.resume.replaceChildren();
      return;
    }
    if (this.el.resume.querySelector("form")) return; // keep what is typed
    const waiting = this.steps.filter((s) => s.kind === "human" && this.stepState(s.id).status === "waiting");
    const forms = waiting.map((s) => {
      const rows = h("div", {});
      const addRow = (k) => rows.append(h("div", { class: "row" },
        h("input", { name: "key", placeholder: "key", value: k || "", size: 12, "aria-label": "answer key" }), "=",
        h("input", { name: "value", placeholder: "value", size: 28, "aria-label": "answer value" })));
      addRow("ok");
      return h("form", { class: "resume card", "data-step": s.id, onsubmit: (e) => { e.preventDefault(); this.submitResume(); } },
        h("div", { class: "prompt" }, `${s.id}: `, this.stepState(s.id).prompt || s.prompt || ""),
        rows,
        h("button", { type: "button", onclick: () => addRow("") }, "+ answer"), " ",
        h("button", { type: "submit", class: "primary", id: `resume-${s.id}` }, "Answer and resume"));
    });
    this.el.resume.replaceChildren(h("h2", {}, "Waiting for answers"), ...forms);
  }

  async submitResume() {
    const answers = {};
    for (const f of this.el.resume.querySelectorAll("form")) {
      const kv = {};
      f.querySelectorAll(".row").forEach((r) => {
        const k = r.querySelector("[name=key]").value.trim();
        if (k) kv[k] = r.querySelector("[name=value]").value;
      });
      if (Object.keys(kv).length) answers[f.dataset.step] = kv;
    }
    await this.act("resume", "resume", { answers });
  }

  async act(path, name, body, confirmText) {
    if (confirmText && !window.confirm(confirmText)) return;
    for (const b of this.main.querySelectorAll(".actions button, #resume button")) b.disabled = true;
    try {
      const res = await api(`/runs/${encodeURIComponent(this.id)}/${path}`, { method: "POST", body });
      this.el.message.replaceChildren(h("div", { class: "notice", role: "status" }, res.message));
      this.apply(res.run);
      if (name === "resume") this.el.resume.replaceChildren();
      this.render();
      if (!this.source && !settled(res.run.status)) {
        this.seq = Math.max(this.seq, res.run.event_seq || 0);
        this.connect();
      }
    } catch (e) {
      this.el.message.replaceChildren(errorBox(`${name}: ${e.message}`));
      this.renderActions();
    } finally {
      for (const b of this.main.querySelectorAll(".actions button, #resume button")) b.disabled = false;
    }
  }

  renderSteps() {
    const rows = this.steps.map((s) => {
      const st = this.stepState(s.id);
      let exit = "–";
      if (st.signal) exit = st.signal;
      else if (st.exit_code !== undefined) exit = String(st.exit_code); // only a step whose process exited has one
      const outs = Object.entries(st.outputs || {});
      const answers = Object.entries(st.answers || {});
      const detail = [];
      if (outs.length) detail.push(h("ul", { class: "kv" }, outs.map(([k, v]) => h("li", {}, `${k}=${v}`))));
      if (answers.length) detail.push(h("ul", { class: "kv" }, answers.map(([k, v]) => h("li", {}, `answer ${k}=${v}`))));
      if (st.status === "waiting" && st.prompt) detail.push(h("span", {}, `asks: ${st.prompt}`));
      for (const t of st.tries || []) {
        detail.push(h("div", { class: "muted" }, `attempt ${t.attempt}: ${t.signal || (t.exit_code !== undefined ? "exit " + t.exit_code : "did not exit")} (${t.reason || ""}), ${t.retried ? "retried" : "not retried"}${t.why ? ": " + t.why : ""}`));
      }
      return h("tr", { class: `clickable${s.id === this.selected ? " selected" : ""}`, "data-step": s.id, onclick: () => this.select(s.id) },
        h("td", { class: "mono" }, s.id), h("td", {}, badge(st.status)), h("td", {}, dash(st.reason)),
        h("td", { class: "num" }, st.attempts || "–"), h("td", { class: "num" }, exit),
        h("td", { class: "num" }, fmtDuration(between(st.started_at, st.finished_at))), h("td", {}, detail));
    });
    this.el.steps.replaceChildren(h("table", { id: "steps-table" },
      h("thead", {}, h("tr", {}, ["step", "state", "reason", "attempts", "exit", "duration", "outputs, answers, tries"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows)));
  }

  // renderLog shows the selected step's log: from S3 once the step's log is
  // stored, else what arrived as events.
  renderLog() {
    const id = this.selected;
    if (!id) {
      this.el.logbar.replaceChildren();
      this.el.log.textContent = "";
      return;
    }
    const st = this.stepState(id);
    const stored = this.stored[id];
    let source;
    if (st.log_key && !["running", "waiting"].includes(st.status)) {
      if (stored && stored.key === st.log_key) {
        source = `from S3: ${st.log_key}`;
        this.el.log.textContent = stored.text;
      } else {
        source = `loading ${st.log_key} from S3…`;
        this.el.log.textContent = this.live[id] || "";
        this.fetchLog(id, st.log_key);
      }
    } else if ((this.steps.find((s) => s.id === id) || {}).kind === "human") {
      source = "a human step has no log: its prompt and answers are in the steps table";
      this.el.log.textContent = "";
    } else {
      source = st.status === "running" ? "live" : (st.status === "pending" ? "not started" : "as events");
      this.el.log.textContent = this.live[id] || "";
    }
    this.el.logbar.replaceChildren(h("strong", { class: "mono" }, id), badge(st.status),
      h("span", { class: "muted", id: "log-source" }, source));
    this.el.log.dataset.step = id;
    this.el.log.scrollTop = this.el.log.scrollHeight;
  }

  async fetchLog(id, key) {
    if (this.fetching === key) return;
    this.fetching = key;
    try {
      const res = await fetch(`${API}/runs/${encodeURIComponent(this.id)}/steps/${encodeURIComponent(id)}/log`, { credentials: "same-origin" });
      const text = await res.text();
      if (!res.ok) {
        let msg = text;
        try { msg = JSON.parse(text).error; } catch (e) { /* plain text */ }
        throw new Error(msg);
      }
      this.stored[id] = { key, text };
    } catch (e) {
      this.stored[id] = { key, text: `logs: step ${id}: ${e.message}` };
    } finally {
      this.fetching = null;
    }
    if (this.selected === id) this.renderLog();
  }

  renderArtifacts() {
    const list = this.doc.artifacts || [];
    this.el.artifacts.replaceChildren(list.length
      ? h("ul", { id: "artifact-list" }, list.map((a) => h("li", {}, h("a", { href: a.url, download: a.path.split("/").pop() }, `${a.step}/${a.path}`))))
      : h("p", { class: "muted" }, "None."));
  }

  renderEvents() {
    if (!this.eventsLoaded) {
      this.el.events.replaceChildren(h("button", { id: "load-events", onclick: () => this.loadEvents() }, `Show the run's ${this.doc.event_seq || 0} events`));
      return;
    }
    const rows = this.events.slice(-300).map((e) => {
      const bits = [];
      if (e.status) bits.push(e.status);
      if (e.reason) bits.push(`(${e.reason})`);
      if (e.exit_code) bits.push(`exit ${e.exit_code}`);
      if (e.signal) bits.push(e.signal);
      if (e.duration_ms) bits.push(fmtDuration(e.duration_ms));
      if (e.type === "output") bits.push(`${e.key}=${e.value}`);
      if (e.type === "artifact") bits.push(e.path);
      if (e.prompt) bits.push(`asks: ${e.prompt}`);
      if (e.message) bits.push(e.message);
      return h("tr", { "data-type": e.type }, h("td", { class: "num" }, e.seq), h("td", {}, timeCell(e.time)),
        h("td", {}, e.type), h("td", { class: "mono" }, dash(e.step)), h("td", {}, bits.join(" ")));
    });
    this.el.events.replaceChildren(rows.length
      ? h("table", { class: "events", id: "events-table" }, h("thead", {}, h("tr", {}, ["seq", "time", "type", "step", "detail"].map((c) => h("th", {}, c)))), h("tbody", {}, rows))
      : h("p", { class: "muted" }, "No events yet."));
  }
}

// ---- start -----------------------------------------------------------------

function route() {
  const main = document.getElementById("main");
  const m = location.pathname.match(/^\/runs\/([^/]+)$/);
  if (m) {
    new RunView(main, decodeURIComponent(m[1])).start();
  } else {
    listPage(main);
  }
}

document.addEventListener("DOMContentLoaded", route);
