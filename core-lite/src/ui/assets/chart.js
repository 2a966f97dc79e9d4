// Line charts drawn as SVG by hand (no library): time on x, one polyline per series.
// Chart.line(container, {series: [{name, color, points: [[xMs, y], ...]}], unit})
// The <svg> carries data-points (points of the longest series) and data-last (the last y
// of the first series) for tests.
'use strict';

const Chart = (() => {
  const NS = 'http://www.w3.org/2000/svg';

  function svg(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // 1, 2 or 5 times a power of ten, so that about `n` steps cover `max`.
  function niceStep(max, n) {
    const raw = max / n;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
    return 10 * p;
  }

  function fmtNum(v) {
    if (v === 0) return '0';
    if (Math.abs(v) >= 100) return v.toFixed(0);
    if (Math.abs(v) >= 10) return v.toFixed(1);
    return v.toPrecision(2);
  }

  function fmtTime(ms) {
    const d = new Date(ms);
    const two = (x) => String(x).padStart(2, '0');
    return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  }

  function line(container, opts) {
    container.textContent = '';
    const W = 560;
    const H = 220;
    const m = { l: 52, r: 12, t: 22, b: 26 };
    const series = opts.series.filter((s) => s.points.length);
    const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img',
      'aria-label': opts.title || 'chart' });
    const longest = Math.max(0, ...opts.series.map((s) => s.points.length));
    root.setAttribute('data-points', String(longest));
    const first = opts.series[0] && opts.series[0].points;
    root.setAttribute('data-last', first && first.length ? String(first[first.length - 1][1]) : '0');
    container.append(root);
    if (!series.length) {
      root.append(svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'no usage yet'));
      return root;
    }
    const xs = series.flatMap((s) => s.points.map((p) => p[0]));
    let x0 = Math.min(...xs);
    let x1 = Math.max(...xs);
    if (x1 === x0) { x0 -= 30000; x1 += 30000; }
    const yMax = Math.max(...series.flatMap((s) => s.points.map((p) => p[1])), 0);
    const step = yMax > 0 ? niceStep(yMax, 4) : 1;
    const y1 = Math.max(step, Math.ceil(yMax / step) * step);
    const X = (x) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
    const Y = (y) => H - m.b - (y / y1) * (H - m.t - m.b);

    for (let v = 0; v <= y1 + step / 2; v += step) {
      root.append(svg('line', { class: 'grid', x1: m.l, x2: W - m.r, y1: Y(v), y2: Y(v) }));
      root.append(svg('text', { x: m.l - 6, y: Y(v) + 4, 'text-anchor': 'end' }, fmtNum(v)));
    }
    const ticks = 4;
    for (let i = 0; i <= ticks; i++) {
      const x = x0 + ((x1 - x0) * i) / ticks;
      root.append(svg('text', { x: X(x), y: H - 8, 'text-anchor': i === 0 ? 'start' : i === ticks ? 'end' : 'middle' },
        fmtTime(x)));
    }
    root.append(svg('line', { class: 'axis', x1: m.l, x2: m.l, y1: m.t, y2: H - m.b }));
    root.append(svg('line', { class: 'axis', x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }));
    if (opts.unit) root.append(svg('text', { x: 4, y: 12 }, opts.unit));

    let lx = W - m.r;
    for (const s of [...series].reverse()) {
      const label = svg('text', { x: lx, y: 12, 'text-anchor': 'end', fill: s.color }, s.name);
      root.append(label);
      lx -= 12 + 7 * s.name.length;
      root.append(svg('polyline', {
        points: s.points.map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(' '),
        fill: 'none', stroke: s.color, 'stroke-width': 2, 'stroke-linejoin': 'round',
      }));
      if (s.points.length === 1) {
        const p = s.points[0];
        root.append(svg('circle', { cx: X(p[0]), cy: Y(p[1]), r: 3, fill: s.color }));
      }
    }
    return root;
  }

  return { line, niceStep };
})();
