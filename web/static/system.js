/* The queues and system pages: what waits where; the scheduler's heartbeat, ticks and the data dir. */
"use strict";
(function () {
  const { el } = dagu;
  const queues = document.getElementById("queues");
  const scheduler = document.getElementById("scheduler");
  const kv = (rows) => el("table", { class: "grid kv" }, rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))));

  async function renderQueues() {
    const data = await dagu.api("/queues");
    queues.replaceChildren(...(data.queues.length ? data.queues.map((q) => el("section", {}, el("h2", {}, q.name),
      el("ol", {}, q.items.map((i) => el("li", {}, el("a", { href: `/runs/${encodeURIComponent(i.dag)}/${encodeURIComponent(i.run_id)}` }, `${i.dag} / ${i.run_id}`),
        " ", el("span", { class: "muted" }, "since " + dagu.time(i.enqueued_at))))))) : [el("p", { class: "muted" }, "No run waits in a queue.")]));
  }

  async function renderSystem() {
    const data = await dagu.api("/system");
    const s = data.scheduler, d = data.data_dir;
    scheduler.replaceChildren(
      kv([["state", dagu.badge(s.alive ? (s.stalled ? "stalled" : "alive") : "not_running")],
          ["pid", s.pid === null ? "" : String(s.pid)], ["last loop", dagu.time(s.last_loop)],
          ["heartbeat age", s.heartbeat_age_sec === null ? "" : s.heartbeat_age_sec + " s"]]),
      el("h3", {}, "Next ticks"),
      el("table", { class: "grid" }, el("tr", {}, el("th", {}, "DAG"), el("th", {}, "next tick")),
        s.dags.map((x) => el("tr", {}, el("td", {}, x.dag), el("td", {}, x.next_tick_local || x.next_tick_utc || "")))),
      el("h3", {}, "Missed ticks"),
      s.overdue.length ? el("ul", {}, s.overdue.map((o) => el("li", {}, JSON.stringify(o)))) : el("p", { class: "muted" }, "none"),
      ...(s.problems.length ? [el("h3", {}, "Problems"), el("ul", {}, s.problems.map((p) => el("li", {}, p)))] : []));
    document.getElementById("data-dir").replaceChildren(kv([["folder", d.home], ["runs kept", String(d.runs)],
      ["disk use of runs", dagu.bytes(d.runs_bytes)]]),
      el("table", { class: "grid" }, el("tr", {}, el("th", {}, "DAG"), el("th", {}, "runs"), el("th", {}, "size")),
        Object.entries(d.dags).map(([name, r]) => el("tr", {}, el("td", {}, name), el("td", { class: "num" }, String(r.runs)), el("td", { class: "num" }, dagu.bytes(r.bytes))))));
  }

  if (queues) { renderQueues(); dagu.live(["queues"], renderQueues); }
  if (scheduler) { renderSystem(); dagu.live(["system", "dags"], renderSystem); }
})();
