import {
  api, h, clear, qs, usd, num, ms, when, day, errorBox, empty, table, pager, field, select, listAll, badge,
} from '../lib.js';

const state = { key_id: '', team_id: '', model: '', status: '', from: '', to: '', offset: 0 };

export async function render(main, args, stale) {
  if (args[0]) { state.key_id = args[0]; state.offset = 0; }
  const [teams, keys] = await Promise.all([listAll('/api/teams'), listAll('/api/keys')]);
  if (stale()) return;
  const teamName = new Map(teams.map((t) => [t.id, t.name]));
  const keyById = new Map(keys.map((k) => [k.id, k]));
  const key = select('key_id', [['', 'All keys'], ...keys.map((k) => [k.id, `${k.name} (${k.key_prefix}…)`])], state.key_id);
  const team = select('team_id', [['', 'All teams'], ...teams.map((t) => [t.id, t.name])], state.team_id);
  const model = h('input', { name: 'model', value: state.model, placeholder: 'alias' });
  const status = h('input', { name: 'status', value: state.status, inputmode: 'numeric', placeholder: 'e.g. 429', pattern: '[0-9]{3}' });
  const from = h('input', { type: 'date', name: 'from', value: state.from });
  const to = h('input', { type: 'date', name: 'to', value: state.to });
  const list = h('div', h('p.loading', 'Loading…'));
  const form = h('form.filters', { role: 'search', 'aria-label': 'Request log filters',
    onchange: () => {
      Object.assign(state, { key_id: key.value, team_id: team.value, model: model.value.trim(), status: status.value.trim(), from: from.value, to: to.value, offset: 0 });
      load();
    },
    onsubmit: (e) => e.preventDefault() },
  field('Key', key), field('Team', team), field('Model', model), field('Status', status), field('From', from), field('To (inclusive)', to));
  main.append(h('div.page-head', h('h1', 'Request log')), form, list);

  async function load() {
    if (state.status && !/^[0-9]{3}$/.test(state.status)) {
      clear(list, errorBox('Status must be a 3-digit HTTP status such as 200 or 429.'));
      return;
    }
    const end = state.to ? `${day(new Date(new Date(`${state.to}T00:00:00Z`).getTime() + 86400000))}T00:00:00Z` : '';
    let page;
    try {
      page = await api('GET', `/api/spend/logs${qs({ key_id: state.key_id, team_id: state.team_id, model: state.model, status: state.status,
        from: state.from ? `${state.from}T00:00:00Z` : '', to: end, limit: 50, offset: state.offset })}`);
    } catch (e) {
      clear(list, errorBox(e));
      return;
    }
    if (stale()) return;
    if (!page.data.length) {
      clear(list, empty('No requests match these filters.'));
      return;
    }
    clear(list, table([
      { label: 'Time (UTC)', cls: 'nowrap', cell: (r) => h('time', { datetime: r.ts, title: when(r.ts) }, when(r.ts).slice(5, 16)) },
      { label: 'Key', cell: (r) => (r.key_id ? h('a', { href: `#/keys/${r.key_id}` }, keyById.has(r.key_id) ? keyById.get(r.key_id).name : r.key_id.slice(0, 8)) : '—') },
      { label: 'Team', cls: 'wide-only', cell: (r) => (r.team_id ? teamName.get(r.team_id) || r.team_id.slice(0, 8) : '—') },
      { label: 'Model', cell: (r) => [r.model_alias || '—', r.provider ? h('small', ` ${r.provider}`) : null] },
      { label: 'Status', cell: (r) => badge(String(r.status ?? '–'), r.status >= 400 ? 'bad' : 'good') },
      { label: 'Tokens', cls: 'num wide-only', cell: (r) => `${num(r.prompt_tokens)} / ${num(r.completion_tokens)}` },
      { label: 'Cost', cls: 'num', cell: (r) => usd(r.cost_usd) },
      { label: 'Latency', cls: 'num wide-only', cell: (r) => ms(r.latency_ms) },
      { label: 'Request id', cls: 'wide-only', cell: (r) => h('code.wrap', r.request_id) },
    ], page.data, 'Requests', { compact: true }), pager(page, (off) => { state.offset = off; load(); }));
  }
  await load();
}
