/* Steps as boxes and `depends` as edges, laid out in layers (longest path from a root), each
 * layer ordered by the mean position of its parents; one SVG, no library.  Linear in steps and
 * edges, so 1,000 steps lay out in milliseconds; the container scrolls. */
"use strict";

dagu.layout = function (graph) {
  const ids = graph.nodes.map((n) => n.id);
  const index = new Map(ids.map((id, i) => [id, i]));
  const parents = ids.map(() => []);
  const children = ids.map(() => []);
  for (const [from, to] of graph.edges) {
    if (!index.has(from) || !index.has(to)) continue;
    parents[index.get(to)].push(index.get(from));
    children[index.get(from)].push(index.get(to));
  }
  const indegree = parents.map((p) => p.length);
  const layer = ids.map(() => 0);
  const queue = ids.map((_, i) => i).filter((i) => indegree[i] === 0);
  for (let head = 0; head < queue.length; head++) {
    const i = queue[head];
    for (const c of children[i]) {
      layer[c] = Math.max(layer[c], layer[i] + 1);
      if (--indegree[c] === 0) queue.push(c);
    }
  }
  const layers = [];
  ids.forEach((_, i) => { (layers[layer[i]] = layers[layer[i]] || []).push(i); });
  const row = ids.map(() => 0);
  layers.forEach((members, depth) => {
    if (depth > 0) {
      const weight = (i) => (parents[i].length ? parents[i].reduce((s, p) => s + row[p], 0) / parents[i].length : 0);
      members.sort((a, b) => weight(a) - weight(b));
    }
    members.forEach((i, r) => { row[i] = r; });
  });
  return { ids, layer, row, parents, layers: layers.length, rows: Math.max(1, ...layers.map((l) => (l ? l.length : 0))) };
};

dagu.drawGraph = function (container, graph, statusOf) {
  const W = 150, H = 34, GX = 60, GY = 16;
  const L = dagu.layout(graph);
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", L.layers * (W + GX) + 20);
  svg.setAttribute("height", L.rows * (H + GY) + 20);
  svg.setAttribute("class", "graph-svg");
  const x = (i) => 10 + L.layer[i] * (W + GX), y = (i) => 10 + L.row[i] * (H + GY);
  const paths = [];
  L.ids.forEach((_, i) => {
    for (const p of L.parents[i]) {
      const x1 = x(p) + W, y1 = y(p) + H / 2, x2 = x(i), y2 = y(i) + H / 2, mx = (x1 + x2) / 2;
      paths.push(`M${x1},${y1}C${mx},${y1} ${mx},${y2} ${x2},${y2}`);
    }
  });
  const edges = document.createElementNS(NS, "path");
  edges.setAttribute("d", paths.join(""));
  edges.setAttribute("class", "edge");
  svg.appendChild(edges);
  graph.nodes.forEach((node, i) => {
    const g = document.createElementNS(NS, "g");
    const status = statusOf ? statusOf(node.id) : null;
    g.setAttribute("class", "node s-" + (status || "none"));
    g.setAttribute("data-step", node.id);
    g.setAttribute("transform", `translate(${x(i)},${y(i)})`);
    const rect = document.createElementNS(NS, "rect");
    rect.setAttribute("width", W); rect.setAttribute("height", H); rect.setAttribute("rx", 5);
    const text = document.createElementNS(NS, "text");
    text.setAttribute("x", 8); text.setAttribute("y", H / 2 + 4);
    text.textContent = node.id.length > 20 ? node.id.slice(0, 19) + "\u2026" : node.id;
    const title = document.createElementNS(NS, "title");
    title.textContent = node.id + (status ? ": " + status : "");
    g.append(rect, text, title);
    svg.appendChild(g);
  });
  container.replaceChildren(svg);
  return svg;
};
