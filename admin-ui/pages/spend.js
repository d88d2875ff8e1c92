import {
  api, h, clear, qs, usd, num, pct, day, errorBox, empty, table, field, select, listAll, csvDownload,
} from '../lib.js';
import { barChart, rankList } from '../charts.js';

const today = new Date();
const state = {
  from: day(new Date(today.getTime() - 29 * 86400000)),
  to: day(today),
  group_by: 'day',
  team_id: '',
};

export async function render(main, _args, stale) {
  const [teams, keys] = await Promise.all([listAll('/api/teams'), listAll('/api/keys')]);
  if (stale()) return;
  const teamName = new Map(teams.map((t) => [t.id, t.name]));
  const keyName = new Map(keys.map((k) => [k.id, `${k.name} (${k.key_prefix}…)`]));
  const from = h('input', { type: 'date', name: 'from', value: state.from, required: true });
  const to = h('input', { type: 'date', name: 'to', value: state.to, required: true });
  const group = select('group_by', [['day', 'Day'], ['team', 'Team'], ['key', 'Key'], ['model', 'Model'], ['provider', 'Provider']], state.group_by);
  const team = select('team_id', [['', 'All teams'], ...teams.map((t) => [t.id, t.name])], state.team_id);
  from.id = 'spend-from'; to.id = 'spend-to'; group.id = 'spend-group'; team.id = 'spend-team';
  const out = h('div', h('p.loading', 'Loading…'));
  const exportBtn = h('button.secondary', { type: 'button', disabled: true }, 'Export CSV');
  const form = h('form.filters', { role: 'search', 'aria-label': 'Spend filters',
    onchange: () => { Object.assign(state, { from: from.value, to: to.value, group_by: group.value, team_id: team.value }); load(); },
    onsubmit: (e) => e.preventDefault() },
  field('From', from), field('To (inclusive)', to), field('Group by', group), field('Team', team));
  main.append(h('div.page-head', h('h1', 'Spend explorer'), h('div.tools', exportBtn)), form, out);

  const label = (g) => {
    if (g.group === null || g.group === undefined) return state.group_by === 'team' ? 'no team' : state.group_by === 'key' ? 'no key' : '(none)';
    if (state.group_by === 'team') return teamName.get(g.group) || g.group;
    if (state.group_by === 'key') return keyName.get(g.group) || g.group;
    return g.group;
  };

  async function load() {
    if (!state.from || !state.to || state.from > state.to) {
      clear(out, errorBox('Pick a From date on or before the To date.'));
      return;
    }
    const end = day(new Date(new Date(`${state.to}T00:00:00Z`).getTime() + 86400000));
    let doc;
    try {
      doc = await api('GET', `/api/spend${qs({ group_by: state.group_by, from: `${state.from}T00:00:00Z`, to: `${end}T00:00:00Z`, team_id: state.team_id })}`);
    } catch (e) {
      clear(out, errorBox(e));
      exportBtn.disabled = true;
      return;
    }
    if (stale()) return;
    const rows = state.group_by === 'day' ? [...doc.data].sort((a, b) => (a.group < b.group ? -1 : 1)) : doc.data;
    const total = Number(doc.totals.cost_usd);
    exportBtn.disabled = rows.length === 0;
    exportBtn.onclick = () => csvDownload(`spend-by-${state.group_by}-${state.from}-to-${state.to}${state.team_id ? `-team-${teamName.get(state.team_id) || state.team_id}` : ''}.csv`,
      [state.group_by, 'id', 'requests', 'prompt_tokens', 'completion_tokens', 'cached_tokens', 'cost_usd'],
      rows.map((g) => [label(g), g.group ?? '', g.requests, g.prompt_tokens, g.completion_tokens, g.cached_tokens, g.cost_usd]));
    if (!rows.length) {
      clear(out, empty('No spend in this range for these filters.'));
      return;
    }
    const chart = state.group_by === 'day'
      ? barChart(fillDays(rows, state.from, state.to).map((g) => ({ label: g.group.slice(5), value: Number(g.cost_usd), title: `${g.group}: ${usd(g.cost_usd)}` })),
        { label: 'Spend per day in USD', fmt: usd })
      : rankList(rows.slice(0, 12).map((g) => ({ label: label(g), value: Number(g.cost_usd), sub: `${num(g.requests)} requests` })), usd, `Spend by ${state.group_by}`);
    clear(out,
      h('div.cards',
        h('section.card.stat', { 'aria-label': 'Total spend' }, h('h2', 'Total spend'), h('p.big', usd(total))),
        h('section.card.stat', { 'aria-label': 'Requests' }, h('h2', 'Requests'), h('p.big', num(doc.totals.requests))),
        h('section.card.stat', { 'aria-label': 'Tokens' }, h('h2', 'Tokens'), h('p.big', num(Number(doc.totals.prompt_tokens) + Number(doc.totals.completion_tokens))),
          h('p.sub', `${num(doc.totals.cached_tokens)} cached`))),
      h('section.card', h('h2', `Spend by ${state.group_by}`), chart),
      table([
        { label: state.group_by[0].toUpperCase() + state.group_by.slice(1), cell: (g) => (state.group_by === 'key' && g.group ? h('a', { href: `#/keys/${g.group}` }, label(g)) : label(g)) },
        { label: 'Requests', cls: 'num', cell: (g) => num(g.requests) },
        { label: 'Prompt tokens', cls: 'num wide-only', cell: (g) => num(g.prompt_tokens) },
        { label: 'Completion tokens', cls: 'num wide-only', cell: (g) => num(g.completion_tokens) },
        { label: 'Cost', cls: 'num', cell: (g) => usd(g.cost_usd) },
        { label: 'Share', cls: 'num', cell: (g) => (total ? pct(Number(g.cost_usd) / total) : '—') },
      ], rows, `Spend by ${state.group_by}`, { compact: true }));
  }
  await load();
}

function fillDays(rows, from, to) {
  const by = new Map(rows.map((r) => [r.group, r]));
  const out = [];
  for (let t = new Date(`${from}T00:00:00Z`).getTime(); t <= new Date(`${to}T00:00:00Z`).getTime() && out.length < 400; t += 86400000) {
    const d = day(new Date(t));
    out.push(by.get(d) || { group: d, cost_usd: 0, requests: 0 });
  }
  return out;
}
