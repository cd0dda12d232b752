/* Small SVG charts, hand-written like graph.js (no library): a DAG's run durations as bars, so
 * day-to-day drift shows; a run's timeline (Gantt) with one bar per attempt, so retries show; and
 * meters that put a step's CPU, memory and I/O beside its numbers, scaled to the run's largest. */
"use strict";

dagu.svg = function (tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) node.setAttribute(k, v);
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return node;
};

/* The history's durations, oldest on the left; each bar links to its run.  A run still going is
 * drawn up to now; the dashed line is the median of the finished runs. */
dagu.durationChart = function (container, history, dagName) {
  const S = dagu.svg;
  const now = Date.now() / 1000;
  const runs = history.filter((r) => r.started_at).slice().reverse()
    .map((r) => Object.assign({}, r, { sec: Math.max(0, (r.finished_at || now) - r.started_at), done: !!r.finished_at }));
  if (!runs.length) { container.replaceChildren(dagu.el("p", { class: "muted" }, "No runs yet.")); return null; }
  const BW = 14, GAP = 3, H = 80, TOP = 14, LEFT = 56, BOTTOM = 16, MIN_SLOTS = 30;
  const max = Math.max(...runs.map((r) => r.sec), 0.001);
  const finished = runs.filter((r) => r.done).map((r) => r.sec).sort((a, b) => a - b);
  const median = finished.length ? finished[Math.floor((finished.length - 1) / 2)] : null;
  const y = (sec) => TOP + H - (sec / max) * H;
  const slots = Math.max(runs.length, MIN_SLOTS);  /* a few runs keep the chart's width, newest on the right */
  const width = LEFT + slots * (BW + GAP) + 10;
  const x0 = LEFT + (slots - runs.length) * (BW + GAP);
  const svg = S("svg", { width, height: TOP + H + BOTTOM, class: "chart-svg duration-chart", id: "duration-chart",
                         role: "img", "aria-label": "duration of each run, oldest first" });
  svg.append(S("text", { x: LEFT - 6, y: TOP + 4, class: "axis", "text-anchor": "end" }, dagu.duration(max)),
             S("text", { x: LEFT - 6, y: TOP + H, class: "axis", "text-anchor": "end" }, "0"),
             S("line", { x1: LEFT - 2, x2: width - 6, y1: TOP + H + 0.5, y2: TOP + H + 0.5, class: "baseline" }));
  runs.forEach((r, i) => {
    const x = x0 + i * (BW + GAP), top = y(r.sec);
    const href = `/runs/${encodeURIComponent(dagName)}/${encodeURIComponent(r.run_id)}`;
    svg.appendChild(S("a", { href },
      S("rect", { x, y: Math.min(top, TOP + H - 1), width: BW, height: Math.max(1, TOP + H - top), rx: 2,
                  class: "bar s-" + (r.status || "none"), "data-run": r.run_id },
        S("title", {}, `${r.run_id}: ${r.status} \u00B7 ${dagu.duration(r.sec)}${r.done ? "" : " so far"} \u00B7 ${dagu.time(r.started_at)}`))));
  });
  if (median !== null) {
    svg.append(S("line", { x1: LEFT - 2, x2: width - 6, y1: y(median), y2: y(median), class: "median" }),
               S("text", { x: LEFT + 2, y: y(median) - 3, class: "axis halo" }, "median " + dagu.duration(median)));
  }
  const day = (r) => new Date(r.started_at * 1000).toLocaleDateString();
  const first = day(runs[0]), last = day(runs[runs.length - 1]);
  svg.append(S("text", { x: width - 10, y: TOP + H + 13, class: "axis", "text-anchor": "end" }, last));
  if (first !== last) svg.append(S("text", { x: x0, y: TOP + H + 13, class: "axis" }, first));
  container.replaceChildren(svg);
  return svg;
};

/* What one attempt came to: the step's status for its last attempt, otherwise by its exit. */
dagu.attemptOutcome = function (step, attempt, isLast, live) {
  if (isLast) {
    if (!attempt.finished_at && !live && step.status === "running") return "aborted";
    return step.status;
  }
  if (!attempt.finished_at) return "aborted";
  return attempt.exit_code === 0 && !attempt.signal && !attempt.error ? "succeeded" : "failed";
};

/* The run's steps as rows, each attempt a bar from its start to its end (now, while it runs). */
dagu.gantt = function (container, run) {
  const S = dagu.svg;
  const now = Date.now() / 1000;
  const steps = Object.values(run.steps || {}).concat(Object.values(run.handlers || {}));
  const spans = [];
  steps.forEach((s) => s.attempts.forEach((a, i) => {
    if (!a.started_at) return;
    const outcome = dagu.attemptOutcome(s, a, i === s.attempts.length - 1, run.live);
    const end = a.finished_at || (outcome === "running" || outcome === "waiting" ? now : a.started_at);
    spans.push({ step: s, attempt: a, n: i + 1, start: a.started_at, end: Math.max(end, a.started_at), outcome });
  }));
  if (!spans.length) { container.replaceChildren(dagu.el("p", { class: "muted" }, "No step has started yet.")); return null; }
  const t0 = Math.min(...spans.map((p) => p.start)), t1 = Math.max(...spans.map((p) => p.end), t0 + 0.001);
  const LABEL = 170, ROW = 22, TOP = 18, RIGHT = 16;
  const width = Math.max(480, (container.clientWidth || 900) - 2);
  const plot = width - LABEL - RIGHT;
  const x = (t) => LABEL + ((t - t0) / (t1 - t0)) * plot;
  const rows = steps.filter((s) => s.attempts.length);
  const svg = S("svg", { width, height: TOP + rows.length * ROW + 6, class: "chart-svg gantt", id: "gantt-chart",
                         role: "img", "aria-label": "timeline of the steps and their attempts" });
  for (let k = 0; k <= 4; k++) {  /* time since the first step started */
    const t = t0 + ((t1 - t0) * k) / 4, gx = x(t);
    svg.append(S("line", { x1: gx, x2: gx, y1: TOP - 4, y2: TOP + rows.length * ROW, class: "grid-line" }),
               S("text", { x: gx, y: TOP - 6, class: "axis", "text-anchor": k === 0 ? "start" : k === 4 ? "end" : "middle" },
                 k === 0 ? "0" : "+" + dagu.duration(t - t0)));
  }
  rows.forEach((s, r) => {
    const yRow = TOP + r * ROW;
    const label = s.handler ? `${s.id} (${s.handler})` : s.id;
    svg.appendChild(S("text", { x: 4, y: yRow + ROW / 2 + 4, class: "label" }, label.length > 24 ? label.slice(0, 23) + "\u2026" : label));
    spans.filter((p) => p.step === s).forEach((p) => {
      const bx = x(p.start), bw = Math.max(2, x(p.end) - bx);
      svg.appendChild(S("rect", { x: bx, y: yRow + 4, width: bw, height: ROW - 8, rx: 2, class: "bar s-" + p.outcome,
                                  "data-step": s.id, "data-attempt": p.n },
        S("title", {}, `${label} attempt ${p.n}: ${p.outcome} \u00B7 ${dagu.duration(p.end - p.start)}` +
                       (p.attempt.exit_code !== null && p.attempt.exit_code !== undefined ? ` \u00B7 exit ${p.attempt.exit_code}` : "") +
                       (p.attempt.signal ? ` \u00B7 ${p.attempt.signal}` : ""))));
    });
  });
  container.replaceChildren(svg);
  return svg;
};

/* A small horizontal meter: `value` of `max`, for a table cell beside the number it draws. */
dagu.meter = function (value, max, kind) {
  const S = dagu.svg;
  const W = 56, H = 8;
  const w = max > 0 && value > 0 ? Math.max(1, (value / max) * W) : 0;
  return S("svg", { width: W, height: H, class: "meter meter-" + kind, "data-value": value || 0 },
    S("rect", { width: W, height: H, rx: 2, class: "meter-bg" }), S("rect", { width: w, height: H, rx: 2, class: "meter-fill" }));
};
