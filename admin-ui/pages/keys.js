import {
  api, session, h, clear, qs, usd, num, when, ms, errorBox, empty, table, pager, badge, listAll,
  dialog, confirmDialog, revealDialog, field, select, formValues, toast,
} from '../lib.js';
import { barChart, lineChart, meter } from '../charts.js';

const state = { q: '', team_id: '', status: '', offset: 0 };
const PERIODS = [['', '—'], ['daily', 'daily'], ['weekly', 'weekly'], ['monthly', 'monthly'], ['total', 'total']];

export async function render(main, args, stale) {
  if (args[0]) return detail(main, args[0], stale);
  const pre = sessionStorage.getItem('gw.keys.team'); // set by a team's link on the Teams page
  if (pre) { state.team_id = pre; state.offset = 0; sessionStorage.removeItem('gw.keys.team'); }
  const teams = await listAll('/api/teams');
  if (stale()) return;
  const teamName = new Map(teams.map((t) => [t.id, t.name]));
  const list = h('div', h('p.loading', 'Loading…'));
  const search = h('input', { type: 'search', id: 'key-search', value: state.q, placeholder: 'Name contains…' });
  const team = select('team_id', [['', 'All teams'], ...teams.map((t) => [t.id, t.name])], state.team_id);
  team.id = 'key-team';
  const status = select('status', [['', 'Any status'], ['active', 'Active'], ['revoked', 'Revoked']], state.status);
  status.id = 'key-status';
  let timer = 0;
  search.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(() => { state.q = search.value.trim(); state.offset = 0; load(); }, 250); });
  team.addEventListener('change', () => { state.team_id = team.value; state.offset = 0; load(); });
  status.addEventListener('change', () => { state.status = status.value; state.offset = 0; load(); });
  main.append(
    h('div.page-head', h('h1', 'Keys'),
      session.admin ? h('button.primary', { type: 'button', onclick: () => issue(teams, load) }, 'Issue key') : null),
    h('div.filters', { role: 'search', 'aria-label': 'Filter keys' },
      field('Search', search), field('Team', team), field('Status', status)),
    list);

  async function load() {
    let page;
    try {
      page = await api('GET', `/api/keys${qs({ q: state.q, team_id: state.team_id, status: state.status, limit: 50, offset: state.offset })}`);
    } catch (e) {
      clear(list, errorBox(e));
      return;
    }
    if (stale()) return;
    if (!page.data.length) {
      clear(list, empty(state.q || state.team_id || state.status ? 'No key matches these filters.' :
        'No keys yet.' + (session.admin ? ' Issue one to let an application call the gateway.' : '')));
      return;
    }
    clear(list, table([
      { label: 'Name', cell: (k) => h('a', { href: `#/keys/${k.id}` }, k.name) },
      { label: 'Key', cell: (k) => h('code', `${k.key_prefix}…`) },
      { label: 'Team', cell: (k) => (k.team_id ? teamName.get(k.team_id) || k.team_id.slice(0, 8) : '—') },
      { label: 'Status', cell: (k) => badge(k.status) },
      { label: 'Limits', cell: (k) => limits(k) },
      { label: 'Budget', cell: (k) => (k.budget_usd !== undefined && k.budget_usd !== null ? `${usd(k.budget_usd)} ${k.budget_period || 'total'}` : '—') },
      { label: 'Models', cell: (k) => (k.models ? k.models.join(', ') : 'all') },
      { label: 'Created', cls: 'nowrap', cell: (k) => when(k.created_at).slice(0, 10) },
      { label: 'Actions', cls: 'actions', cell: (k) => actions(k, load) },
    ], page.data, 'Virtual keys'), pager(page, (off) => { state.offset = off; load(); }));
  }
  await load();
}

function limits(k) {
  const parts = [];
  if (k.rpm_limit !== null && k.rpm_limit !== undefined) parts.push(`${num(k.rpm_limit)} rpm`);
  if (k.tpm_limit !== null && k.tpm_limit !== undefined) parts.push(`${num(k.tpm_limit)} tpm`);
  return parts.length ? parts.join(' · ') : '—';
}

function actions(k, reload) {
  if (!session.admin || k.status !== 'active') return '';
  return h('span.row-actions',
    h('button.secondary.small', { type: 'button', 'aria-label': `Rotate ${k.name}`, onclick: () => rotate(k, reload) }, 'Rotate'),
    h('button.danger.small', { type: 'button', 'aria-label': `Revoke ${k.name}`, onclick: () => revoke(k, reload) }, 'Revoke'));
}

function revoke(k, reload) {
  confirmDialog(`Revoke ${k.name}?`, `Requests with ${k.key_prefix}… are refused as soon as the data planes get the change. This cannot be undone.`,
    'Revoke key', async () => {
      await api('POST', `/api/keys/${k.id}/revoke`);
      toast(`Revoked ${k.name}`);
      reload();
    });
}

function rotate(k, reload) {
  confirmDialog(`Rotate ${k.name}?`, `A new secret replaces ${k.key_prefix}…; the old one stops working right away. Limits, budget and history stay.`,
    'Rotate key', async () => {
      const doc = await api('POST', `/api/keys/${k.id}/rotate`);
      revealDialog(`New secret for ${k.name}`, doc.key);
      reload();
    });
}

// The editable fields of a key as form inputs; k: current values or {}.
function keyForm(teams, k = {}) {
  const v = (x) => (x === null || x === undefined ? '' : x);
  return [
    field('Name', h('input', { name: 'name', required: true, maxlength: 200, value: v(k.name) })),
    field('Team', select('team_id', [['', 'No team'], ...teams.map((t) => [t.id, t.name])], k.team_id)),
    field('Models (scopes)', h('input', { name: 'models', value: k.models ? k.models.join(', ') : '', placeholder: 'all models' }),
      'Comma-separated aliases; empty allows every model.'),
    h('div.row',
      field('Requests / minute', h('input', { name: 'rpm_limit', type: 'number', min: 0, step: 1, value: v(k.rpm_limit), placeholder: 'no limit' })),
      field('Tokens / minute', h('input', { name: 'tpm_limit', type: 'number', min: 0, step: 1, value: v(k.tpm_limit), placeholder: 'no limit' }))),
    h('div.row',
      field('Budget (USD)', h('input', { name: 'budget_usd', type: 'number', min: 0, step: '0.01', value: v(k.budget_usd), placeholder: 'no budget' })),
      field('Budget period', select('budget_period', PERIODS, k.budget_period))),
    field('Expires', h('input', { name: 'expires_at', type: 'date', value: k.expires_at ? k.expires_at.slice(0, 10) : '' })),
  ];
}

function keyBody(form, editing) {
  const f = formValues(form, ['rpm_limit', 'tpm_limit', 'budget_usd']);
  const body = { name: f.name };
  const models = f.models.split(',').map((s) => s.trim()).filter(Boolean);
  const opt = (name, value) => { if (editing || (value !== null && value !== '')) body[name] = value === '' ? null : value; };
  opt('team_id', f.team_id);
  opt('models', models.length ? models : null);
  opt('rpm_limit', f.rpm_limit);
  opt('tpm_limit', f.tpm_limit);
  opt('budget_usd', f.budget_usd);
  opt('budget_period', f.budget_period);
  opt('expires_at', f.expires_at ? `${f.expires_at}T23:59:59Z` : '');
  if (!body.name) throw new Error('Name is required.');
  return body;
}

function issue(teams, reload) {
  dialog('Issue a key', keyForm(teams), [
    { label: 'Cancel', kind: 'secondary' },
    { label: 'Issue key', kind: 'primary', submit: true, onclick: async (form) => {
      const doc = await api('POST', '/api/keys', keyBody(form, false));
      reload();
      revealDialog(`Key ${doc.name} issued`, doc.key);
    } },
  ]);
}

async function detail(main, id, stale) {
  const [k, teams] = await Promise.all([api('GET', `/api/keys/${encodeURIComponent(id)}`), listAll('/api/teams')]);
  if (stale()) return;
  const team = teams.find((t) => t.id === k.team_id);
  const reload = () => { clear(main); detail(main, id, stale); };
  const usage = h('div', h('p.loading', 'Loading usage…'));
  const recent = h('div');
  main.append(
    h('p.crumbs', h('a', { href: '#/keys' }, '← Keys')),
    h('div.page-head', h('h1', k.name, ' ', badge(k.status)),
      session.admin && k.status === 'active' ? h('span.row-actions',
        h('button.secondary', { type: 'button', onclick: () => edit(k, teams, reload) }, 'Edit'),
        h('button.secondary', { type: 'button', onclick: () => rotate(k, reload) }, 'Rotate'),
        h('button.danger', { type: 'button', onclick: () => revoke(k, reload) }, 'Revoke')) : null),
    h('section.card', h('dl.props',
      h('dt', 'Key'), h('dd', h('code', `${k.key_prefix}…`)),
      h('dt', 'Team'), h('dd', team ? team.name : '—'),
      h('dt', 'Models'), h('dd', k.models ? k.models.join(', ') : 'all'),
      h('dt', 'Limits'), h('dd', limits(k)),
      h('dt', 'Budget'), h('dd', k.budget_usd !== undefined && k.budget_usd !== null ? `${usd(k.budget_usd)} ${k.budget_period || 'total'}` : '—'),
      h('dt', 'Expires'), h('dd', when(k.expires_at)),
      h('dt', 'Created'), h('dd', when(k.created_at)),
      k.revoked_at ? [h('dt', 'Revoked'), h('dd', when(k.revoked_at))] : null,
      h('dt', 'Id'), h('dd', h('code', k.id)))),
    h('section.card', h('h2', 'Usage, last 30 days'), usage),
    h('section.card', h('h2', 'Recent requests'), recent));
  try {
    const [o, logs] = await Promise.all([api('GET', `/api/overview${qs({ days: 30, key_id: k.id })}`),
      api('GET', `/api/spend/logs${qs({ key_id: k.id, limit: 10 })}`)]);
    if (stale()) return;
    if (!o.range.requests) {
      clear(usage, empty('No requests with this key in the last 30 days.'));
    } else {
      clear(usage,
        h('p.sub', `${num(o.range.requests)} requests · ${usd(o.range.cost_usd)} · p50 ${ms(o.range.p50_ms)} · p95 ${ms(o.range.p95_ms)}`),
        k.budget_usd !== null && k.budget_usd !== undefined ? meter(Number(o.month.cost_usd), Number(k.budget_usd)) : null,
        h('div.grid2',
          barChart(o.series.map((p) => ({ label: p.day.slice(5), value: Number(p.cost_usd), title: `${p.day}: ${usd(p.cost_usd)}` })),
            { label: 'Spend per day for this key', fmt: usd }),
          lineChart(o.series.map((p) => p.day.slice(5)), [{ name: 'requests', values: o.series.map((p) => p.requests), cls: 's1' },
            { name: 'errors', values: o.series.map((p) => p.errors), cls: 's3' }], { label: 'Requests per day for this key', fmt: (v) => num(Math.round(v)) })));
    }
    clear(recent, logs.data.length ? table([
      { label: 'Time', cell: (r) => when(r.ts) },
      { label: 'Model', cell: (r) => r.model_alias || '—' },
      { label: 'Status', cell: (r) => badge(String(r.status ?? '–'), r.status >= 400 ? 'bad' : 'good') },
      { label: 'Tokens', cell: (r) => num(Number(r.prompt_tokens) + Number(r.completion_tokens)) },
      { label: 'Cost', cell: (r) => usd(r.cost_usd) },
      { label: 'Latency', cell: (r) => ms(r.latency_ms) },
    ], logs.data, 'Recent requests') : empty('No requests yet.'),
    logs.total > logs.data.length ? h('p', h('a', { href: `#/logs/${k.id}` }, `All ${num(logs.total)} requests →`)) : null);
  } catch (e) {
    clear(usage, errorBox(e));
  }
}

function edit(k, teams, reload) {
  dialog(`Edit ${k.name}`, keyForm(teams, k), [
    { label: 'Cancel', kind: 'secondary' },
    { label: 'Save', kind: 'primary', submit: true, onclick: async (form) => {
      await api('PATCH', `/api/keys/${k.id}`, keyBody(form, true));
      toast('Saved');
      reload();
    } },
  ]);
}
