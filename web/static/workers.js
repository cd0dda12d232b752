/* The Workers page: each distributed worker's health, labels, running runs and last heartbeat.
 * It re-reads on every change of the workers' records (each heartbeat rewrites one), and every few
 * seconds besides, because a worker that stops beating changes nothing on disk: only time turns
 * it late, then lost. */
"use strict";
(function () {
  const { el } = dagu;
  const AGE_REFRESH_MS = 5000;

  function ago(sec) {
    if (sec < 1) return "just now";
    return dagu.duration(sec).replace(/\.\d+ s$/, " s") + " ago";
  }

  function runLink(ref) {
    const [dag, runId] = ref.split("/");
    return el("li", {}, el("a", { href: `/runs/${encodeURIComponent(dag)}/${encodeURIComponent(runId)}` }, `${dag} / ${runId}`));
  }

  async function render() {
    let data;
    try { data = await dagu.api("/workers"); } catch (e) { return; }
    const table = document.getElementById("workers-table");
    table.hidden = !data.workers.length;
    document.getElementById("workers-empty").hidden = data.workers.length > 0;
    table.querySelector("tbody").replaceChildren(...data.workers.map((w) => el("tr", { "data-worker": w.id },
      el("td", {}, el("strong", {}, w.id)),
      el("td", {}, el("span", { class: "badge h-" + w.health }, w.health), w.reason ? el("div", { class: "muted small" }, w.reason) : null),
      el("td", {}, Object.entries(w.labels).map(([k, v]) => el("span", { class: "tag" }, `${k}=${v}`))),
      el("td", {}, el("span", { class: "muted small" }, `${w.running.length} of ${w.max_active_runs}`),
         w.running.length ? el("ul", { class: "plain" }, w.running.map(runLink)) : null),
      el("td", { title: dagu.time(w.last_heartbeat) }, ago(Math.max(0, data.now - w.last_heartbeat))),
      el("td", {}, `${w.host} (pid ${w.pid})`),
      el("td", {}, dagu.time(w.started_at)))));
  }

  render();
  dagu.live(["workers"], render);
  setInterval(render, AGE_REFRESH_MS);
})();
