/* The DAG page: graph coloured by the latest run, start form from the params, history, the YAML editor. */
"use strict";
(function () {
  const { el } = dagu;
  const name = document.getElementById("dag-name").dataset.dag;
  let dag = dagu.initial;
  let latest = null;  // the latest run's steps, for the graph's colours

  async function loadLatest() {
    latest = null;
    if (dag.history && dag.history.length) {
      try { latest = await dagu.api(`/runs/${encodeURIComponent(name)}/${encodeURIComponent(dag.history[0].run_id)}`); } catch (e) { latest = null; }
    }
  }

  function renderForm() {
    const form = document.getElementById("start-form");
    if (!dag.ok) { form.replaceChildren(el("p", { class: "muted" }, "This DAG does not compile: fix it to start it.")); return; }
    const fields = dag.params.map((p) => {
      const label = p.positional ? `$${p.name}` : p.name;
      const input = p.enum.length
        ? el("select", { name: p.name, required: p.required }, p.enum.map((v) => el("option", { value: v, selected: v === p.default }, v)))
        : el("input", { name: p.name, value: p.default || "", required: p.required,
                        type: p.type === "number" || p.type === "integer" ? "number" : "text" });
      return el("label", {}, el("span", {}, label + (p.required ? " *" : "")), input,
                p.description ? el("span", { class: "muted small" }, p.description) : null);
    });
    const start = el("button", { type: "submit", id: "start-button" }, "Start");
    const enqueue = el("button", { type: "button", id: "enqueue-button" }, "Enqueue");
    form.replaceChildren(...fields, el("div", { class: "actions" }, start, enqueue));
    const params = () => {
      const out = {};
      dag.params.forEach((p) => { out[p.positional ? p.name : p.name] = form.elements[p.name].value; });
      return out;
    };
    const result = document.getElementById("start-result");
    async function send(action) {
      try {
        const res = await dagu.api(`/dags/${encodeURIComponent(name)}/${action}`, { method: "POST", body: { params: params() } });
        result.replaceChildren(action === "start" ? "Started " : "Queued ",
          el("a", { href: `/runs/${encodeURIComponent(res.dag)}/${encodeURIComponent(res.run_id)}` }, res.run_id));
      } catch (e) { result.textContent = "Refused: " + e.message; }
    }
    form.onsubmit = (ev) => { ev.preventDefault(); send("start"); };
    enqueue.onclick = () => send("enqueue");
  }

  function render() {
    document.getElementById("dag-meta").textContent = [dag.description, dag.file,
      dag.schedule.length ? (dag.schedule_words || dag.schedule).join("; ") : "", dag.next_run ? "next " + dagu.time(dag.next_run) : ""]
      .filter(Boolean).join(" \u00B7 ");
    const diag = document.getElementById("dag-diagnostics");
    diag.hidden = !dag.diagnostics.length;
    diag.replaceChildren(...dag.diagnostics.map((x) => el("div", { class: "diag " + x.severity },
      el("code", {}, `${x.file.split("/").pop()}:${x.line}:${x.col}: ${x.severity}: `), x.message, " ", el("span", { class: "muted" }, `[${x.code}]`))));
    const steps = latest ? latest.steps : {};
    dagu.drawGraph(document.getElementById("graph"), dag.graph, (id) => (steps[id] ? steps[id].status : null));
    dagu.durationChart(document.getElementById("duration-chart-box"), dag.history, name);
    document.querySelector("#history tbody").replaceChildren(...dag.history.map((r) => el("tr", {},
      el("td", {}, el("a", { href: `/runs/${encodeURIComponent(name)}/${encodeURIComponent(r.run_id)}` }, r.run_id)),
      el("td", {}, dagu.badge(r.status)), el("td", {}, dagu.time(r.started_at)),
      el("td", {}, r.finished_at && r.started_at ? dagu.duration(r.finished_at - r.started_at) : ""))));
  }

  renderForm();
  render();
  dagu.editor(document.getElementById("editor"), name);
  loadLatest().then(render);
  dagu.live([`dag:${name}`], async () => {
    dag = await dagu.api(`/dags/${encodeURIComponent(name)}`);
    await loadLatest();
    render();
  });
})();
