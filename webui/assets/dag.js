// The steps' DAG as plain SVG: each step in the column of its longest
// chain of needs, edges from each need to the step that needs it.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const NODE_W = 170, NODE_H = 46, COL_GAP = 60, ROW_GAP = 18, PAD = 16;

function svgEl(name, attrs, text) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

// dagLayout gives each step a column (its depth) and a row.
function dagLayout(steps) {
  const byId = new Map(steps.map((s) => [s.id, s]));
  const depth = new Map();
  const visiting = new Set();
  function d(id) {
    if (depth.has(id)) return depth.get(id);
    if (visiting.has(id)) return 0; // a cycle cannot be stored; be safe anyway
    visiting.add(id);
    const s = byId.get(id);
    let v = 0;
    for (const n of (s && s.needs) || []) if (byId.has(n)) v = Math.max(v, d(n) + 1);
    visiting.delete(id);
    depth.set(id, v);
    return v;
  }
  const cols = [];
  for (const s of steps) {
    const c = d(s.id);
    (cols[c] = cols[c] || []).push(s.id);
  }
  const pos = new Map();
  cols.forEach((ids, c) => ids.forEach((id, r) => pos.set(id, { c, r })));
  const rows = Math.max(1, ...cols.map((ids) => ids.length));
  return { pos, cols: cols.length, rows };
}

// drawDAG replaces the contents of box with the graph; states maps step id
// to its state; onSelect(id) is called when a node is clicked.
function drawDAG(box, steps, states, selected, onSelect) {
  const { pos, cols, rows } = dagLayout(steps);
  const width = PAD * 2 + cols * NODE_W + Math.max(0, cols - 1) * COL_GAP;
  const height = PAD * 2 + rows * NODE_H + Math.max(0, rows - 1) * ROW_GAP;
  const svg = svgEl("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "steps of the run" });
  const defs = svgEl("defs");
  const marker = svgEl("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.appendChild(svgEl("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#9aa4b2" }));
  defs.appendChild(marker);
  svg.appendChild(defs);
  const xy = (id) => {
    const p = pos.get(id);
    return { x: PAD + p.c * (NODE_W + COL_GAP), y: PAD + p.r * (NODE_H + ROW_GAP) };
  };
  for (const s of steps) {
    for (const n of s.needs || []) {
      if (!pos.has(n)) continue;
      const a = xy(n), b = xy(s.id);
      const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2;
      const mx = (x1 + x2) / 2;
      svg.appendChild(svgEl("path", { class: "edge", d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`, "marker-end": "url(#arrow)" }));
    }
  }
  for (const s of steps) {
    const st = states[s.id] || { status: "pending" };
    const { x, y } = xy(s.id);
    const g = svgEl("g", { class: `node n-${st.status}${s.id === selected ? " selected" : ""}`, "data-step": s.id, tabindex: 0, transform: `translate(${x},${y})` });
    g.appendChild(svgEl("title", {}, `${s.id}: ${st.status}${st.reason ? " (" + st.reason + ")" : ""}`));
    g.appendChild(svgEl("rect", { width: NODE_W, height: NODE_H }));
    const label = s.id.length > 20 ? s.id.slice(0, 19) + "…" : s.id;
    g.appendChild(svgEl("text", { x: 10, y: 19 }, label));
    let detail = st.status;
    if (s.kind === "human") detail += " · human";
    if (st.attempts > 1) detail += ` · attempt ${st.attempts}`;
    g.appendChild(svgEl("text", { x: 10, y: 36, class: "st" }, detail));
    g.addEventListener("click", () => onSelect(s.id));
    g.addEventListener("keydown", (e) => { if (e.key === "Enter") onSelect(s.id); });
    svg.appendChild(g);
  }
  box.replaceChildren(svg);
}
