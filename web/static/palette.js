/* The command palette, on every page: Ctrl-K (⌘K on a Mac) or the header's button opens it; typing
 * asks /api/v1/search (DAG names matched fuzzily, run ids; `dag/run` narrows runs to a DAG); the
 * arrow keys move, Enter goes, Esc or a click outside closes.  An Enter typed before the answer
 * arrives goes to the first hit of that answer, so fast typists land where they meant. */
"use strict";
(function () {
  const { el } = dagu;
  const mac = /Mac|iPhone|iPad/.test(navigator.platform || "");
  let root = null, input = null, list = null;
  let hits = [], active = 0, seq = 0, shownFor = null, listedFor = null, timer = null, enterPending = false;
  /* shownFor: the query the list answers since this opening (Enter waits for it); listedFor: the
     query of the items listed, which a reopened palette shows until its fresh answer comes */

  /* `text` with the characters at `positions` in <mark>: why each hit matched. */
  function marked(text, positions) {
    const at = new Set(positions || []);
    const out = [];
    let run = "", inMark = false;
    const flush = () => { if (run) out.push(inMark ? el("mark", {}, run) : run); run = ""; };
    for (let i = 0; i < text.length; i++) {
      if (at.has(i) !== inMark) { flush(); inMark = at.has(i); }
      run += text[i];
    }
    flush();
    return out;
  }

  function build() {
    input = el("input", { id: "palette-input", type: "text", autocomplete: "off", spellcheck: "false",
                          placeholder: "Jump to a DAG or run\u2026  (dag/run narrows to one DAG)",
                          "aria-controls": "palette-list", role: "combobox", "aria-expanded": "true" });
    list = el("ul", { id: "palette-list", role: "listbox" });
    const box = el("div", { class: "palette", role: "dialog", "aria-label": "Jump to" }, input, list,
      el("div", { class: "palette-help muted small" }, "\u2191\u2193 to move \u00B7 Enter to go \u00B7 Esc to close"));
    root = el("div", { id: "palette", class: "palette-backdrop", hidden: true }, box);
    root.addEventListener("mousedown", (ev) => { if (ev.target === root) close(); });
    input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(query, 60); });
    input.addEventListener("keydown", onKey);
    document.body.appendChild(root);
  }

  function open() {
    if (!root) build();
    root.hidden = false;
    shownFor = null;
    active = 0;  /* a new opening starts at the top of what is listed */
    if (hits.length) render();
    input.select();
    input.focus();
    query();
  }

  function close() {
    if (root) root.hidden = true;
    enterPending = false;
  }

  async function query() {
    const mine = ++seq, q = input.value;
    clearTimeout(timer);
    let res;
    try { res = await dagu.api("/search?q=" + encodeURIComponent(q)); }
    catch (e) { if (mine === seq) list.replaceChildren(el("li", { class: "palette-empty muted" }, e.message)); return; }
    if (mine !== seq) return;  /* a newer keystroke's answer is on its way */
    /* a fresh answer to the query already listed keeps the item the arrows chose meanwhile */
    const chosen = listedFor === q && hits[active] ? hits[active].href : null;
    shownFor = listedFor = q;
    hits = res.dags.map((d) => ({ href: "/dags/" + encodeURIComponent(d.name), kind: "dag", d }))
      .concat(res.runs.map((r) => ({ href: `/runs/${encodeURIComponent(r.dag)}/${encodeURIComponent(r.run_id)}`, kind: "run", r })));
    active = Math.max(0, hits.findIndex((h) => h.href === chosen));
    render();
    if (enterPending) { enterPending = false; go(); }
  }

  function item(h, i) {
    const body = h.kind === "dag"
      ? [el("span", { class: "palette-kind" }, "DAG"), el("span", { class: "palette-name" }, marked(h.d.name, h.d.positions)),
         h.d.ok ? null : dagu.badge("broken"), h.d.description ? el("span", { class: "muted small" }, h.d.description) : null]
      : [el("span", { class: "palette-kind" }, "run"), el("span", { class: "palette-name" }, h.r.dag + " / ", marked(h.r.run_id, h.r.positions)),
         dagu.badge(h.r.status), el("span", { class: "muted small" }, dagu.time(h.r.started_at))];
    return el("li", { class: "palette-item" + (i === active ? " active" : ""), role: "option", "aria-selected": String(i === active),
                      "data-href": h.href, "data-kind": h.kind,
                      onmousemove: () => { if (active !== i) { active = i; render(); } },
                      onclick: () => { active = i; go(); } }, body);
  }

  function render() {
    list.replaceChildren(...(hits.length ? hits.map(item) : [el("li", { class: "palette-empty muted" }, "No DAG or run matches.")]));
    const current = list.children[active];
    if (current && current.scrollIntoView) current.scrollIntoView({ block: "nearest" });
  }

  function go() {
    const h = hits[active];
    if (!h) return;
    close();
    location.assign(h.href);
  }

  function onKey(ev) {
    if (ev.key === "ArrowDown" || (ev.key === "n" && ev.ctrlKey)) { ev.preventDefault(); if (hits.length) { active = (active + 1) % hits.length; render(); } }
    else if (ev.key === "ArrowUp" || (ev.key === "p" && ev.ctrlKey)) { ev.preventDefault(); if (hits.length) { active = (active - 1 + hits.length) % hits.length; render(); } }
    else if (ev.key === "Enter") {
      ev.preventDefault();
      if (shownFor === input.value) go();
      else { enterPending = true; query(); }  /* go once the answer for what was typed arrives */
    } else if (ev.key === "Escape") { ev.preventDefault(); close(); }
  }

  document.addEventListener("keydown", (ev) => {
    /* ⌘K on a Mac, where Ctrl-K stays the text fields' "delete to the end of the line"; Ctrl-K elsewhere */
    if ((mac ? ev.metaKey : ev.ctrlKey) && !ev.altKey && ev.key.toLowerCase() === "k") {
      ev.preventDefault();
      if (root && !root.hidden) close(); else open();
    } else if (ev.key === "Escape" && root && !root.hidden) close();
  });
  const button = document.getElementById("palette-open");
  if (button) {
    button.addEventListener("click", open);
    const kbd = button.querySelector("kbd");
    if (kbd && mac) kbd.textContent = "\u2318K";
  }
})();
