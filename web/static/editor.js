/* The DAG page's YAML editor: the compiler's diagnostics at their lines while typing (a check
 * 300 ms after the last key, through /spec/check), and a save the server refuses unless the
 * text compiles (422 with the same diagnostics; nothing is written then). */
"use strict";
dagu.editor = function (root, name) {
  const { el } = dagu;
  const gutter = el("pre", { class: "editor-gutter", "aria-hidden": "true" });
  const area = el("textarea", { class: "editor-text", id: "spec-text", spellcheck: "false", wrap: "off" });
  const list = el("ul", { class: "editor-diagnostics", id: "spec-diagnostics" });
  const state = el("span", { class: "muted small", id: "spec-state" });
  const save = el("button", { type: "button", id: "spec-save" }, "Save");
  const revert = el("button", { type: "button", id: "spec-revert" }, "Revert");
  root.replaceChildren(el("div", { class: "editor" }, gutter, area), el("div", { class: "actions" }, save, revert, state), list);
  let loaded = null;  // {text, sha256} as last read from the server
  let timer = null, seq = 0;
  let marks = new Map();  // line -> severity

  function drawGutter() {
    const lines = area.value.split("\n").length;
    const rows = [];
    for (let i = 1; i <= lines; i++) {
      const sev = marks.get(i);
      rows.push(sev ? `<span class="mark ${sev}">${i}</span>` : String(i));
    }
    gutter.innerHTML = rows.join("\n");
    gutter.scrollTop = area.scrollTop;
  }

  function show(diags) {
    marks = new Map();
    (diags || []).forEach((d) => { if (!marks.has(d.line) || d.severity === "error") marks.set(d.line, d.severity); });
    list.replaceChildren(...(diags || []).map((d) => el("li", { class: "diag " + d.severity, "data-line": d.line },
      el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); jump(d.line, d.col); } }, `${d.line}:${d.col}`),
      ` ${d.severity}: ${d.message}`, d.notes && d.notes.length ? el("span", { class: "muted" }, " (" + d.notes.join("; ") + ")") : null)));
    drawGutter();
  }

  function jump(line, col) {
    const lines = area.value.split("\n");
    let pos = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) pos += lines[i].length + 1;
    pos += Math.max(0, (col || 1) - 1);
    area.focus();
    area.setSelectionRange(pos, pos);
  }

  async function check() {
    const mine = ++seq;
    try {
      const res = await dagu.api(`/dags/${encodeURIComponent(name)}/spec/check`, { method: "POST", body: { text: area.value } });
      if (mine !== seq) return;  // a newer keystroke's check is on its way
      show(res.diagnostics);
      const errors = res.diagnostics.filter((d) => d.severity === "error").length;
      state.textContent = res.renamed_to ? `renames the DAG to ${res.renamed_to}: not allowed here`
        : errors ? `${errors} error${errors > 1 ? "s" : ""}: cannot be saved` : (area.value === loaded.text ? "saved" : "compiles: unsaved changes");
    } catch (e) { if (mine === seq) state.textContent = "check failed: " + e.message; }
  }

  async function load() {
    loaded = await dagu.api(`/dags/${encodeURIComponent(name)}/spec`);
    area.value = loaded.text;
    state.textContent = "saved";
    check();
  }

  area.addEventListener("input", () => { drawGutter(); clearTimeout(timer); timer = setTimeout(check, 300); state.textContent = "checking\u2026"; });
  area.addEventListener("scroll", () => { gutter.scrollTop = area.scrollTop; });
  area.addEventListener("keydown", (ev) => {
    if (ev.key === "Tab") { ev.preventDefault(); document.execCommand("insertText", false, "  "); }
    if ((ev.metaKey || ev.ctrlKey) && ev.key === "s") { ev.preventDefault(); save.click(); }
  });
  save.onclick = async () => {
    try {
      await dagu.api(`/dags/${encodeURIComponent(name)}/spec`, { method: "PUT", body: { text: area.value, base_sha256: loaded.sha256 } });
      state.textContent = "saved";
      await load();
    } catch (e) {
      if (e.diagnostics) show(e.diagnostics);
      state.textContent = "refused: " + e.message;
    }
  };
  revert.onclick = () => { area.value = loaded.text; drawGutter(); check(); };
  load().catch((e) => { state.textContent = "cannot load: " + e.message; });
};
