// Hand-rolled SVG charts: no library, no build step. They scale with their
// container (viewBox), carry a text alternative (role="img" + aria-label)
// and a <title> per mark for hover values.

const NS = 'http://www.w3.org/2000/svg';

function s(tag, attrs = {}, ...kids) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, v);
  for (const k of kids) if (k !== null && k !== undefined) el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return el;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 4, 6, 8, 10]) if (m * p >= v) return m * p; // quarters stay round
  return 10 * p;
}

// Drawing units: on a phone the viewBox is narrower, so axis text keeps a readable size.
let W = 640;
let H = 220;
const fit = () => { W = window.innerWidth < 700 ? 400 : 640; H = window.innerWidth < 700 ? 200 : 220; };
const PAD = { l: 62, r: 26, t: 12, b: 28 };

function frame(label, max, fmt) {
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': label });
  const ih = H - PAD.t - PAD.b;
  for (let i = 0; i <= 4; i++) {
    const y = PAD.t + ih - (ih * i) / 4;
    svg.append(s('line', { x1: PAD.l, x2: W - PAD.r, y1: y, y2: y, class: 'grid' }));
    svg.append(s('text', { x: PAD.l - 6, y: y + 4, class: 'axis', 'text-anchor': 'end' }, fmt((max * i) / 4)));
  }
  return svg;
}

function xLabels(svg, labels, xAt) {
  const n = labels.length;
  const every = Math.max(1, Math.ceil(n / (W < 500 ? 5 : 7)));
  labels.forEach((l, i) => {
    if (i % every !== 0 && i !== n - 1) return;
    if (i !== n - 1 && n - 1 - i < every / 2) return;
    svg.append(s('text', { x: xAt(i), y: H - 8, class: 'axis', 'text-anchor': 'middle' }, l));
  });
}

// Vertical bars: points [{label, value, title}].
export function barChart(points, { label, fmt = String, cls = 'bar' } = {}) {
  fit();
  const max = niceMax(Math.max(0, ...points.map((p) => p.value)));
  const svg = frame(label, max, fmt);
  const iw = W - PAD.l - PAD.r;
  const ih = H - PAD.t - PAD.b;
  const step = iw / Math.max(1, points.length);
  const bw = Math.max(2, Math.min(48, step * 0.7));
  points.forEach((p, i) => {
    const hgt = (ih * p.value) / max;
    svg.append(s('rect', { x: PAD.l + step * i + (step - bw) / 2, y: PAD.t + ih - hgt, width: bw, height: Math.max(0, hgt),
      class: cls, rx: 2 }, s('title', {}, p.title || `${p.label}: ${fmt(p.value)}`)));
  });
  xLabels(svg, points.map((p) => p.label), (i) => PAD.l + step * i + step / 2);
  return wrap(svg, null);
}

// Lines: labels [x...], series [{name, values, cls}].
export function lineChart(labels, series, { label, fmt = String } = {}) {
  fit();
  const all = series.flatMap((x) => x.values.filter((v) => v !== null && v !== undefined));
  const max = niceMax(Math.max(0, ...all));
  const svg = frame(label, max, fmt);
  const iw = W - PAD.l - PAD.r;
  const ih = H - PAD.t - PAD.b;
  const xAt = (i) => PAD.l + (labels.length <= 1 ? iw / 2 : (iw * i) / (labels.length - 1));
  const yAt = (v) => PAD.t + ih - (ih * v) / max;
  for (const ser of series) {
    let d = '';
    let pen = false;
    ser.values.forEach((v, i) => {
      if (v === null || v === undefined) { pen = false; return; }
      d += `${pen ? 'L' : 'M'}${xAt(i).toFixed(1)},${yAt(v).toFixed(1)}`;
      pen = true;
    });
    svg.append(s('path', { d, class: `line ${ser.cls || ''}` }));
    ser.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      svg.append(s('circle', { cx: xAt(i), cy: yAt(v), r: 3, class: `dot ${ser.cls || ''}` },
        s('title', {}, `${labels[i]} ${ser.name}: ${fmt(v)}`)));
    });
  }
  xLabels(svg, labels, xAt);
  return wrap(svg, series.map((x) => [x.name, x.cls]));
}

function wrap(svg, legend) {
  const fig = document.createElement('figure');
  fig.className = 'chart-fig';
  fig.append(svg);
  if (legend) {
    const l = document.createElement('figcaption');
    l.className = 'legend';
    for (const [name, cls] of legend) {
      const item = document.createElement('span');
      const sw = document.createElement('i');
      sw.className = `swatch ${cls || ''}`;
      item.append(sw, name);
      l.append(item);
    }
    fig.append(l);
  }
  return fig;
}

// Horizontal share bars for "top N" lists: rows [{label, value, sub}].
export function rankList(rows, fmt, label) {
  const max = Math.max(0, ...rows.map((r) => r.value)) || 1;
  const ol = document.createElement('ol');
  ol.className = 'rank';
  ol.setAttribute('aria-label', label);
  for (const r of rows) {
    const li = document.createElement('li');
    const name = document.createElement('span');
    name.className = 'rank-name';
    if (r.node) name.append(r.node); else name.textContent = r.label;
    const val = document.createElement('span');
    val.className = 'rank-val';
    val.textContent = fmt(r.value);
    const bar = document.createElement('span');
    bar.className = 'rank-bar';
    const fill = document.createElement('span');
    fill.style.width = `${Math.max(1, (100 * r.value) / max)}%`;
    bar.append(fill);
    li.append(name, val, bar);
    if (r.sub) {
      const sub = document.createElement('small');
      sub.textContent = r.sub;
      li.append(sub);
    }
    ol.append(li);
  }
  return ol;
}

// A budget meter: spent of budget.
export function meter(spent, budget) {
  const m = document.createElement('span');
  m.className = 'meter';
  const ratio = budget > 0 ? spent / budget : 0;
  m.setAttribute('role', 'meter');
  m.setAttribute('aria-valuemin', '0');
  m.setAttribute('aria-valuemax', String(budget));
  m.setAttribute('aria-valuenow', String(spent));
  const f = document.createElement('span');
  f.className = ratio >= 1 ? 'over' : ratio >= 0.8 ? 'near' : 'ok';
  f.style.width = `${Math.min(100, 100 * ratio)}%`;
  m.append(f);
  return m;
}
