/* The DAGs page: search, tag and status filters, last-20-runs strip, diagnostics of broken files. */
"use strict";
(function () {
  const { el } = dagu;
  let rows = dagu.initial.dags || [];
  const search = document.getElementById("search");
  const tagFilter = document.getElementById("tag-filter");
  const statusFilter = document.getElementById("status-filter");

  function matches(d) {
    const q = search.value.trim().toLowerCase();
    if (q && !(d.name.toLowerCase().includes(q) || (d.description || "").toLowerCase().includes(q)
               || d.tags.some((t) => t.toLowerCase().includes(q)))) return false;
    if (tagFilter.value && !d.tags.includes(tagFilter.value)) return false;
    const s = statusFilter.value;
    if (s === "broken") return !d.ok;
    if (s === "never") return d.ok && !d.last_status;
    if (s) return d.last_status === s;
    return true;
  }

  function strip(d) {
    const cells = d.runs.slice().reverse().map((r) =>
      el("a", { class: "cell s-" + r.status, href: "/runs/" + encodeURIComponent(d.name) + "/" + encodeURIComponent(r.run_id),
                title: r.run_id + ": " + r.status + " " + dagu.time(r.started_at) }));
    return el("div", { class: "strip" }, cells);
  }

  function diagnostics(d) {
    return el("ul", { class: "diag-list" }, d.diagnostics.filter((x) => x.severity === "error").map((x) =>
      el("li", {}, el("code", {}, `${x.file.split("/").pop()}:${x.line}:${x.col}`), ` ${x.message} `,
         el("span", { class: "muted" }, `[${x.code}]`))));
  }

  function render() {
    const tags = [...new Set(rows.flatMap((d) => d.tags))].sort();
    const chosen = tagFilter.value;
    tagFilter.replaceChildren(el("option", { value: "" }, "all tags"), ...tags.map((t) => el("option", { value: t, selected: t === chosen }, t)));
    const body = document.querySelector("#dags-table tbody");
    body.replaceChildren(...rows.filter(matches).map((d) => el("tr", { class: d.ok ? "" : "broken", "data-dag": d.name },
      el("td", {}, el("a", { href: "/dags/" + encodeURIComponent(d.name) }, d.name),
         d.description ? el("div", { class: "muted small" }, d.description) : null,
         d.ok ? null : diagnostics(d)),
      el("td", {}, d.tags.map((t) => el("button", { type: "button", class: "tag", title: "show only " + t,
                                                     onclick: () => { tagFilter.value = t; changed(); } }, t))),
      el("td", { class: "schedule" }, d.schedule.map((cron, i) => el("div", { title: cron },
        (d.schedule_words || d.schedule)[i], (d.schedule_words || [])[i] !== cron ? el("span", { class: "muted small cron" }, " " + cron) : null))),
      el("td", {}, dagu.time(d.next_run)),
      el("td", {}, d.ok ? dagu.badge(d.last_status) : dagu.badge("broken")),
      el("td", {}, strip(d)))));
    document.getElementById("dags-empty").hidden = rows.length > 0;
  }

  /* The filters live in the address (?q=&tag=&status=), so a filtered list can be linked and survives reload. */
  const params = new URLSearchParams(location.search);
  search.value = params.get("q") || "";
  statusFilter.value = params.get("status") || "";
  tagFilter.append(el("option", { value: params.get("tag") || "" }, params.get("tag") || ""));
  tagFilter.value = params.get("tag") || "";
  function changed() {
    const out = new URLSearchParams();
    if (search.value.trim()) out.set("q", search.value.trim());
    if (tagFilter.value) out.set("tag", tagFilter.value);
    if (statusFilter.value) out.set("status", statusFilter.value);
    history.replaceState(null, "", location.pathname + (out.toString() ? "?" + out : ""));
    render();
  }
  for (const input of [search, tagFilter, statusFilter]) input.addEventListener("input", changed);
  render();
  dagu.live(["dags"], async () => { rows = (await dagu.api("/dags")).dags; render(); });
})();
