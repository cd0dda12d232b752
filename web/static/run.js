/* The run page: status, graph coloured by step status, a timeline of steps and attempts (charts.js),
 * steps with attempts, exit and resource use (numbers with meters),
 * sub-runs both ways, a live log tail paged by byte range, and stop / retry / approve actions. */
"use strict";
(function () {
  const { el } = dagu;
  const title = document.getElementById("run-title");
  const dagName = title.dataset.dag, runId = title.dataset.run;
  const base = `/runs/${encodeURIComponent(dagName)}/${encodeURIComponent(runId)}`;
  let run = dagu.initial;
  const log = { step: null, stream: "stdout", start: 0, end: 0, size: 0 };
  const LOG_PAGE = 64 * 1024;

  function sum(attempts, key) {
    return attempts.reduce((s, a) => s + ((a.usage && a.usage[key]) || 0), 0);
  }
  function peak(attempts) {
    return Math.max(0, ...attempts.map((a) => (a.usage && a.usage.peak_rss_bytes) || 0));
  }
  function exitOf(a) {
    if (!a) return "";
    if (a.signal) return a.signal;
    return a.exit_code === null || a.exit_code === undefined ? "" : String(a.exit_code);
  }

  function act(label, call) {
    const out = document.getElementById("action-result");
    return async () => {
      try { await call(); out.textContent = label + ": asked"; } catch (e) { out.textContent = label + " refused: " + e.message; }
    };
  }

  function approvalForm(step) {
    const spec = (step.approval_request || {});
    const inputs = el("input", { name: "inputs", placeholder: "KEY=value, KEY2=value", size: 40 });
    const reason = el("input", { name: "reason", placeholder: "reason" });
    const body = () => {
      const map = {};
      inputs.value.split(",").map((s) => s.trim()).filter(Boolean).forEach((kv) => {
        const i = kv.indexOf("="); if (i > 0) map[kv.slice(0, i).trim()] = kv.slice(i + 1).trim();
      });
      return { inputs: map, reason: reason.value || null };
    };
    const decide = (action) => act(action, () => dagu.api(`${base}/steps/${encodeURIComponent(step.id)}/${action}`, { method: "POST", body: body() }));
    return el("div", { class: "approval", "data-step": step.id }, el("strong", {}, step.id), " ", spec.prompt || "", " ",
      inputs, reason,
      el("button", { type: "button", class: "approve", onclick: decide("approve") }, "Approve"),
      el("button", { type: "button", class: "reject", onclick: decide("reject") }, "Reject"),
      el("button", { type: "button", class: "push-back", onclick: decide("push-back") }, "Push back"));
  }

  function subRuns(list) {
    return list.map((r) => el("li", {}, `${r.step} \u2192 `,
      el("a", { href: `/runs/${encodeURIComponent(r.dag)}/${encodeURIComponent(r.run_id)}` }, `${r.dag} / ${r.run_id}`), " ", dagu.badge(r.status),
      r.runs.length ? el("ul", {}, subRuns(r.runs)) : null));
  }

  function render() {
    document.getElementById("run-status").replaceWith(Object.assign(dagu.badge(run.status), { id: "run-status" }));
    document.getElementById("run-meta").textContent = [dagu.time(run.started_at),
      run.finished_at && run.started_at ? dagu.duration(run.finished_at - run.started_at) : "",
      run.params.length ? "params " + run.params.join(" ") : "", run.live ? "live" : ""].filter(Boolean).join(" \u00B7 ");
    const problems = document.getElementById("run-problems");
    problems.hidden = !run.problems.length && !run.error;
    problems.replaceChildren(...[run.error, ...run.problems].filter(Boolean).map((p) => el("div", { class: "diag error" }, p)));
    const steps = Object.values(run.steps).concat(Object.values(run.handlers || {}));
    dagu.drawGraph(document.getElementById("graph"), run.graph, (id) => (run.steps[id] ? run.steps[id].status : null));
    dagu.gantt(document.getElementById("gantt"), run);
    const cpu = (s) => sum(s.attempts, "user_sec") + sum(s.attempts, "sys_sec");
    const most = (f) => Math.max(0, ...steps.map(f));  /* each meter is scaled to the run's largest */
    const top = { cpu: most(cpu), rss: most((s) => peak(s.attempts)), read: most((s) => sum(s.attempts, "read_bytes")),
                  write: most((s) => sum(s.attempts, "write_bytes")) };
    const metered = (value, text, kind) => el("td", { class: "num metered" }, text, dagu.meter(value, top[kind], kind));
    document.querySelector("#steps tbody").replaceChildren(...steps.map((s) => {
      const last = s.attempts[s.attempts.length - 1];
      const wall = s.attempts.reduce((t, a) => t + (a.finished_at && a.started_at ? a.finished_at - a.started_at : 0), 0);
      return el("tr", { "data-step": s.id, class: log.step === s.id ? "chosen" : "" },
        el("td", {}, s.handler ? `${s.id} (${s.handler})` : s.id), el("td", {}, dagu.badge(s.status)),
        el("td", { class: "num" }, s.attempts.length), el("td", { class: "num" }, exitOf(last)),
        el("td", { class: "num" }, wall ? dagu.duration(wall) : ""),
        s.attempts.length ? metered(cpu(s), cpu(s).toFixed(2), "cpu") : el("td", {}),
        s.attempts.length ? metered(peak(s.attempts), dagu.bytes(peak(s.attempts)), "rss") : el("td", {}),
        s.attempts.length ? metered(sum(s.attempts, "read_bytes"), dagu.bytes(sum(s.attempts, "read_bytes")), "read") : el("td", {}),
        s.attempts.length ? metered(sum(s.attempts, "write_bytes"), dagu.bytes(sum(s.attempts, "write_bytes")), "write") : el("td", {}),
        el("td", {}, s.output !== null && s.output !== undefined ? `${s.output_name || ""}=${s.output}` : ""),
        el("td", {}, s.attempts.length ? el("button", { type: "button", class: "show-log", onclick: () => openLog(s.id) }, "Log") : null,
          el("button", { type: "button", class: "retry-step", onclick: act("retry " + s.id, () => dagu.api(`${base}/retry`, { method: "POST", body: { step: s.id } })) }, "Retry from here")));
    }));
    const waiting = Object.values(run.steps).filter((s) => s.status === "waiting");
    document.getElementById("approvals").hidden = !waiting.length;
    // keep the form of a step that still waits: a live update must not wipe what the user typed
    const forms = document.getElementById("approval-forms");
    const kept = new Map([...forms.children].map((f) => [f.dataset.step, f]));
    forms.replaceChildren(...waiting.map((s) => kept.get(s.id) || approvalForm(s)));
    const parent = run.parent ? [el("li", {}, "called by ", el("a", { href: "/runs/" + run.parent.split("/").map(encodeURIComponent).join("/") }, run.parent))] : [];
    const subs = subRuns(run.sub_runs || []);
    document.getElementById("sub-runs-section").hidden = !parent.length && !subs.length;
    document.getElementById("sub-runs").replaceChildren(...parent, ...subs);
  }

  async function fetchLog(offset, limit) {
    return dagu.api(`${base}/steps/${encodeURIComponent(log.step)}/log?stream=${log.stream}&offset=${offset}&limit=${limit}`);
  }

  async function openLog(step, given) {
    log.step = step;
    document.getElementById("log-which").textContent = step;
    try {
      const chunk = given || await dagu.api(`${base}/steps/${encodeURIComponent(step)}/log?stream=${log.stream}&tail=${LOG_PAGE}`);
      log.start = chunk.offset; log.end = chunk.next_offset; log.size = chunk.size;
      document.getElementById("log").textContent = chunk.text;
    } catch (e) { document.getElementById("log").textContent = e.message; log.start = log.end = 0; }
    showRange();
    render();
  }

  async function follow() {
    if (!log.step) return;
    try {
      for (;;) {
        const chunk = await fetchLog(log.end, LOG_PAGE);
        if (!chunk.text.length) { log.size = chunk.size; break; }
        document.getElementById("log").textContent += chunk.text;
        log.end = chunk.next_offset; log.size = chunk.size;
      }
    } catch (e) { /* the step may have a new attempt: reopen */ return openLog(log.step); }
    showRange();
  }

  async function older() {
    if (!log.step || log.start === 0) return;
    const from = Math.max(0, log.start - LOG_PAGE);
    const chunk = await fetchLog(from, log.start - from);
    const pre = document.getElementById("log");
    pre.textContent = chunk.text + pre.textContent;
    log.start = from;
    showRange();
  }

  function showRange() {
    document.getElementById("log-range").textContent = log.step ? `bytes ${log.start}\u2013${log.end} of ${log.size}` : "";
    document.getElementById("log-older").disabled = !log.step || log.start === 0;
  }

  document.getElementById("act-stop").onclick = act("stop", () => dagu.api(`${base}/stop`, { method: "POST" }));
  document.getElementById("act-retry").onclick = act("retry", () => dagu.api(`${base}/retry`, { method: "POST", body: {} }));
  document.getElementById("log-older").onclick = older;
  document.getElementById("log-stream").onchange = (ev) => { log.stream = ev.target.value; if (log.step) openLog(log.step); };

  render();
  showRange();
  const first = Object.values(run.steps).find((s) => s.attempts.length);
  const given = run.log && first && run.log.step === first.id && run.log.stream === log.stream ? run.log : undefined;
  if (first) openLog(first.id, given);  // the page came with that log's tail: no fetch for the first paint
  dagu.live([`run:${dagName}/${runId}`, `logs:${dagName}/${runId}`], async (changed) => {
    if (changed.includes(`run:${dagName}/${runId}`)) { run = await dagu.api(base); render(); }
    if (changed.includes(`logs:${dagName}/${runId}`)) follow();
  });
})();
