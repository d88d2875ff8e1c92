// Shared helpers of the admin UI: the API client, DOM building (never
// innerHTML: every value from the API is text), formatting, dialogs, tables.

const TOKEN_KEY = 'gw.admin_token';

export const session = {
  token: () => sessionStorage.getItem(TOKEN_KEY),
  set: (t) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
  me: null, // {id, name, role} from GET /api/me
  get admin() { return this.me && this.me.role === 'admin'; },
};

export class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
  get plain() {
    if (this.status === 0) return this.message;
    const what = this.status === 403 ? 'Not allowed' : this.status === 401 ? 'Not signed in' :
      this.status === 404 ? 'Not found' : this.status === 409 ? 'Conflict' :
      this.status >= 500 ? 'Server error' : 'Rejected';
    return `${what} (HTTP ${this.status}): ${this.message}`;
  }
}

// One call of the admin API; JSON in and out. Throws ApiError.
export async function api(method, path, body, token = session.token()) {
  const opts = { method, headers: { Accept: 'application/json' }, cache: 'no-store' };
  if (token) opts.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch (e) {
    throw new ApiError(0, 'network', `Cannot reach the control plane: ${e.message}`);
  }
  const text = await resp.text();
  let doc = null;
  try { doc = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!resp.ok) {
    const err = doc && doc.error ? doc.error : { type: 'http_error', message: text.slice(0, 300) || resp.statusText };
    if (resp.status === 401 && token === session.token()) window.dispatchEvent(new Event('gw:unauthorized'));
    throw new ApiError(resp.status, err.type, err.message);
  }
  return doc;
}

export const qs = (o) => {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(o)) if (v !== undefined && v !== null && v !== '') p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : '';
};

// ---- DOM ----

// h('button.primary', {onclick, type: 'button'}, 'Save'): tag[.class...][#id]
export function h(sel, attrs, ...kids) {
  const m = sel.match(/^([a-z0-9]+)?((?:[.#][\w-]+)*)$/i);
  const el = document.createElement((m && m[1]) || 'div');
  if (m && m[2]) {
    for (const part of m[2].match(/[.#][\w-]+/g)) {
      if (part[0] === '.') el.classList.add(part.slice(1)); else el.id = part.slice(1);
    }
  }
  if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    kids.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, kids);
  return el;
}

function append(el, kids) {
  for (const k of kids.flat(Infinity)) {
    if (k === null || k === undefined || k === false) continue;
    el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
}

export function clear(el, ...kids) {
  el.replaceChildren();
  append(el, kids);
  return el;
}

// ---- formatting ----

export function usd(x) {
  const n = Number(x || 0);
  const digits = n !== 0 && Math.abs(n) < 1 ? 4 : 2;
  return '$' + n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}
export const num = (x) => Number(x || 0).toLocaleString('en-US');
export const pct = (x) => `${(100 * (x || 0)).toFixed(x && x < 0.1 ? 2 : 1)}%`;
export const ms = (x) => (x === null || x === undefined ? '–' : x >= 10000 ? `${(x / 1000).toFixed(1)} s` : `${num(x)} ms`);
export function when(ts) {
  if (!ts) return '–';
  const d = new Date(ts);
  return d.toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
}
export function ago(ts) {
  if (!ts) return 'never';
  const s = Math.max(0, (Date.now() - new Date(ts).getTime()) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}
export const day = (d) => d.toISOString().slice(0, 10);

// ---- feedback ----

export function errorBox(err) {
  const msg = err instanceof ApiError ? err.plain : String(err && err.message ? err.message : err);
  return h('div.alert.error', { role: 'alert' }, msg);
}

export function empty(text) {
  return h('div.empty', text);
}

let toastTimer = 0;
export function toast(text, kind = 'ok') {
  let t = document.getElementById('toast');
  if (!t) {
    t = h('div#toast', { role: 'status', 'aria-live': 'polite' });
    document.body.append(t);
  }
  t.className = `show ${kind}`;
  t.textContent = text;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.className = ''; }, 4000);
}

// Runs fn (async) showing a failure in place of target's content or in box.
export async function guarded(box, fn) {
  try {
    return await fn();
  } catch (e) {
    clear(box, errorBox(e));
    return undefined;
  }
}

// ---- dialogs ----

// A modal <dialog>. body: nodes; actions: [{label, kind, onclick}] where
// onclick may return a promise; a throw shows the error inside the dialog.
let dialogSeq = 0;
export function dialog(title, body, actions = []) {
  const err = h('div.dialog-error');
  const buttons = actions.map((a) => h(`button.${a.kind || 'secondary'}`, {
    type: a.submit ? 'submit' : 'button',
    onclick: a.submit ? null : async (ev) => run(ev, a),
  }, a.label));
  const form = h('form', { method: 'dialog', novalidate: true },
    h('header', h('h2', { id: `dlg-${++dialogSeq}` }, title),
      h('button.icon', { type: 'button', 'aria-label': 'Close', onclick: () => close() }, '×')),
    h('div.dialog-body', body), err,
    h('footer', buttons));
  const dlg = h('dialog', { 'aria-labelledby': form.querySelector('h2').id }, form);
  const submit = actions.find((a) => a.submit);
  form.addEventListener('submit', (ev) => { ev.preventDefault(); if (submit) run(ev, submit); });
  async function run(ev, a) {
    clear(err);
    const btns = form.querySelectorAll('footer button');
    btns.forEach((b) => { b.disabled = true; });
    try {
      const keep = a.onclick ? await a.onclick(form) : false;
      if (!keep) close();
    } catch (e) {
      clear(err, errorBox(e));
    } finally {
      btns.forEach((b) => { b.disabled = false; });
    }
  }
  function close() {
    dlg.close();
    dlg.remove();
  }
  dlg.addEventListener('cancel', () => setTimeout(() => dlg.remove(), 0));
  document.body.append(dlg);
  dlg.showModal();
  return { dlg, form, close };
}

export function confirmDialog(title, text, label, onyes) {
  return dialog(title, [h('p', text)], [
    { label: 'Cancel', kind: 'secondary' },
    { label, kind: 'danger', onclick: onyes },
  ]);
}

// Shows a secret once, with a copy button; closing forgets it.
export function revealDialog(title, secret, note) {
  const input = h('input.secret', { readonly: true, value: secret, 'aria-label': 'New secret', spellcheck: 'false' });
  const status = h('span.copied', { role: 'status' });
  const copy = h('button.primary', {
    type: 'button',
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(secret);
      } catch {
        input.select();
        document.execCommand('copy');
      }
      status.textContent = 'Copied';
    },
  }, 'Copy');
  const d = dialog(title, [
    h('p.warn', note || 'This is the only time the key is shown. Copy it now and store it safely.'),
    h('div.reveal', input, copy), status,
  ], [{ label: 'Done', kind: 'secondary' }]);
  d.dlg.addEventListener('close', () => { input.value = ''; });
  input.addEventListener('focus', () => input.select());
  return d;
}

// ---- forms ----

export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h('div.field', h('label', { for: id }, label), input, hint ? h('small', hint) : null);
}

export function select(name, options, value) {
  return h('select', { name },
    options.map(([v, label]) => h('option', { value: v, selected: String(v) === String(value ?? '') ? true : null }, label)));
}

// Reads form values; numbers: names to parse as numbers ('' -> null).
export function formValues(form, numbers = []) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    let v = el.type === 'checkbox' ? el.checked : el.value.trim();
    if (numbers.includes(el.name)) v = v === '' ? null : Number(v);
    out[el.name] = v;
  }
  return out;
}

// ---- tables ----

// cols: [{label, cell: (row) => node|text, cls}]
// compact: numeric tables keep their columns on phones (scrolling sideways
// inside their box) instead of turning into stacked cards.
export function table(cols, rows, caption, { compact = false } = {}) {
  return h(compact ? 'div.table-wrap.compact' : 'div.table-wrap', h('table',
    caption ? h('caption.sr-only', caption) : null,
    h('thead', h('tr', cols.map((c) => h('th', { scope: 'col', class: c.cls }, c.label)))),
    h('tbody', rows.map((r) => h('tr', cols.map((c) => h('td', { class: c.cls, 'data-label': c.label }, c.cell(r))))))));
}

export function pager(page, onpage) {
  const from = page.total === 0 ? 0 : page.offset + 1;
  const to = page.offset + page.data.length;
  return h('nav.pager', { 'aria-label': 'Pages' },
    h('span', `${num(from)}–${num(to)} of ${num(page.total)}`),
    h('button.secondary', { type: 'button', disabled: page.offset === 0 ? true : null,
      onclick: () => onpage(Math.max(0, page.offset - page.limit)) }, 'Previous'),
    h('button.secondary', { type: 'button', disabled: to >= page.total ? true : null,
      onclick: () => onpage(page.offset + page.limit) }, 'Next'));
}

export function badge(text, kind) {
  return h(`span.badge.${kind || text}`, text);
}

// Lists every page of a collection up to max rows (for name lookups).
export async function listAll(path, max = 500) {
  const doc = await api('GET', `${path}${path.includes('?') ? '&' : '?'}limit=${Math.min(max, 500)}`);
  return doc.data;
}

export function csvDownload(filename, header, rows) {
  const esc = (v) => {
    const s = v === null || v === undefined ? '' : String(v);
    // a leading = + - @ would be a formula in a spreadsheet
    const safe = /^[=+\-@\t\r]/.test(s) && !/^-?\d/.test(s) ? `'${s}` : s;
    return /[",\n\r]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
  };
  const text = [header, ...rows].map((r) => r.map(esc).join(',')).join('\r\n') + '\r\n';
  const url = URL.createObjectURL(new Blob([text], { type: 'text/csv' }));
  const a = h('a', { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
