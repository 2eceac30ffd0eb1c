// graph.js draws the mesh's traffic graph (GET /api/v1/graph, or the
// "graph" event) as SVG: callers on the left, services in the middle,
// the versions that served them on the right, as Kiali's versioned app
// graph. Edges carry the request rate and success percentage; edges out
// of a service carry their share of its traffic (the split).
'use strict';

window.gitmeshGraph = (() => {
  const NS = 'http://www.w3.org/2000/svg';
  const COL = 300, ROW = 96, PAD = 60, R = 18;

  function svgEl(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function num(v, digits) {
    return Number(v).toFixed(digits).replace(/\.?0+$/, '') || '0';
  }

  // layers assigns each node the length of the longest path reaching it
  // (bounded, so a cycle cannot loop).
  function layers(nodes, edges) {
    const layer = new Map(nodes.map(n => [n.id, 0]));
    for (let i = 0; i < nodes.length; i++) {
      let moved = false;
      for (const e of edges) {
        const want = layer.get(e.source) + 1;
        if (layer.has(e.target) && layer.get(e.target) < want && want < nodes.length) {
          layer.set(e.target, want);
          moved = true;
        }
      }
      if (!moved) break;
    }
    return layer;
  }

  function label(n) {
    return n.version ? `${n.name} ${n.version}` : n.name;
  }

  // shape draws node n as the vocabulary's shape of its kind.
  function shape(n, x, y, shapes) {
    const s = shapes[n.kind];
    if (s === 'triangle') {
      return svgEl('polygon', {class: 'shape', points: `${x},${y - R} ${x + R},${y + R * 0.8} ${x - R},${y + R * 0.8}`});
    }
    if (s === 'diamond') {
      return svgEl('polygon', {class: 'shape', points: `${x},${y - R} ${x + R},${y} ${x},${y + R} ${x - R},${y}`});
    }
    return svgEl('circle', {class: 'shape', cx: x, cy: y, r: R});
  }

  function edgeTone(e) {
    if (!(e.rate > 0)) return 'idle';
    if (e.successRate === undefined || e.successRate === null) return 'tone-ok';
    if (e.successRate >= 99) return 'tone-ok';
    if (e.successRate >= 95) return 'tone-warn';
    return 'tone-bad';
  }

  function edgeText(e, windowed) {
    const parts = [];
    if (e.share !== undefined && e.share !== null) parts.push(`${num(e.share, 1)}%`);
    parts.push(windowed ? `${num(e.rate, 2)} rps` : `${num(e.requests, 0)} req`);
    if (e.successRate !== undefined && e.successRate !== null) parts.push(`${num(e.successRate, 1)}% ok`);
    return parts.join(' · ');
  }

  // render replaces svg's content with graph g; shapes maps node kinds to
  // triangle, circle or diamond (the vocab event's nodeShapes).
  function render(svg, g, shapes) {
    svg.replaceChildren();
    const nodes = g.nodes || [], edges = g.edges || [];
    if (nodes.length === 0) {
      svg.setAttribute('viewBox', '0 0 600 60');
      svg.appendChild(svgEl('text', {x: 10, y: 30, class: 'muted'}, 'No traffic in the window.'));
      return;
    }
    const layer = layers(nodes, edges);
    const cols = [];
    for (const n of nodes) {
      const l = layer.get(n.id);
      (cols[l] = cols[l] || []).push(n);
    }
    const rows = Math.max(...cols.map(c => (c ? c.length : 0)));
    const height = PAD * 2 + (rows - 1) * ROW;
    const pos = new Map();
    cols.forEach((col, l) => {
      if (!col) return;
      const top = PAD + ((rows - col.length) * ROW) / 2;
      col.forEach((n, i) => pos.set(n.id, {x: PAD + 40 + l * COL, y: top + i * ROW}));
    });
    const width = PAD * 2 + 80 + (cols.length - 1) * COL;
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    svg.style.maxHeight = `${Math.max(height, 160)}px`;

    const defs = svgEl('defs');
    const marker = svgEl('marker', {id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse'});
    marker.appendChild(svgEl('path', {d: 'M 0 0 L 10 5 L 0 10 z'}));
    defs.appendChild(marker);
    svg.appendChild(defs);

    const windowed = g.windowSeconds > 0;
    for (const e of edges) {
      const a = pos.get(e.source), b = pos.get(e.target);
      if (!a || !b) continue;
      const x1 = a.x + R + 2, x2 = b.x - R - 4, mx = (x1 + x2) / 2;
      const grp = svgEl('g', {class: `edge ${edgeTone(e)}`, 'data-source': e.source, 'data-target': e.target,
        'data-rate': e.rate, 'data-success': e.successRate === undefined ? '' : e.successRate});
      grp.appendChild(svgEl('path', {d: `M ${x1} ${a.y} C ${mx} ${a.y}, ${mx} ${b.y}, ${x2} ${b.y}`, 'marker-end': 'url(#arrow)'}));
      // The label sits over the edge's last, level stretch, so the edges a
      // service fans out to keep theirs apart.
      grp.appendChild(svgEl('text', {class: 'edge-label', x: x2 - 8, y: b.y - 8, 'text-anchor': 'end'}, edgeText(e, windowed)));
      svg.appendChild(grp);
    }
    for (const n of nodes) {
      const p = pos.get(n.id);
      const grp = svgEl('g', {class: `node ${n.kind}`, 'data-id': n.id});
      grp.appendChild(shape(n, p.x, p.y, shapes || {}));
      grp.appendChild(svgEl('text', {class: 'node-label', x: p.x, y: p.y + R + 16}, label(n)));
      if (n.service && n.namespace) {
        grp.appendChild(svgEl('text', {class: 'node-label muted', x: p.x, y: p.y + R + 30}, n.namespace));
      }
      const title = svgEl('title', {}, n.service || n.id);
      grp.appendChild(title);
      svg.appendChild(grp);
    }
  }

  return {render};
})();
