import { api, h, clear, usd, num, pct, ms, errorBox, empty, qs } from '../lib.js';
import { barChart, lineChart, rankList, meter } from '../charts.js';

let days = 14;

export async function render(main, _args, stale) {
  const range = h('select', { id: 'ov-days', 'aria-label': 'Time range',
    onchange: () => { days = Number(range.value); render(clear(main), [], stale); } },
  [7, 14, 30, 90].map((d) => h('option', { value: d, selected: d === days ? true : null }, `Last ${d} days`)));
  const body = h('div', h('p.loading', 'Loading…'));
  main.append(h('div.page-head', h('h1', 'Overview'), h('div.tools', range)), body);
  let o;
  try {
    o = await api('GET', `/api/overview${qs({ days })}`);
  } catch (e) {
    clear(body, errorBox(e));
    return;
  }
  if (stale()) return;
  const r = o.range;
  const errRate = r.requests ? r.errors / r.requests : 0;
  const monthBudget = o.budgets.filter((b) => b.kind === 'team' && b.budget_period === 'monthly')
    .reduce((a, b) => a + Number(b.budget_usd), 0);
  const dayBudget = o.budgets.filter((b) => b.kind === 'team' && b.budget_period === 'daily')
    .reduce((a, b) => a + Number(b.budget_usd), 0);
  const card = (label, value, sub, extra) => h('section.card.stat', { 'aria-label': label },
    h('h2', label), h('p.big', value), sub ? h('p.sub', sub) : null, extra || null);
  const cards = h('div.cards',
    card('Spend today', usd(o.today.cost_usd), `${num(o.today.requests)} requests` +
      (dayBudget ? ` · daily team budgets ${usd(dayBudget)}` : ''), dayBudget ? meter(Number(o.today.cost_usd), dayBudget) : null),
    card('Spend this month', usd(o.month.cost_usd), monthBudget ? `of ${usd(monthBudget)} monthly team budgets` :
      `${num(o.month.requests)} requests`, monthBudget ? meter(Number(o.month.cost_usd), monthBudget) : null),
    card(`Requests (${o.days} d)`, num(r.requests), `${num(r.tokens)} tokens · ${usd(r.cost_usd)}`),
    card('Error rate', pct(errRate), `${num(r.errors)} responses ≥ 400`),
    card('Latency p50 / p95', `${ms(r.p50_ms)} / ${ms(r.p95_ms)}`, `over ${o.days} days, within 5%`));
  const labels = o.series.map((p) => p.day.slice(5));
  const charts = h('div.grid2',
    h('section.card', h('h2', 'Spend per day'),
      r.requests ? barChart(o.series.map((p) => ({ label: p.day.slice(5), value: Number(p.cost_usd),
        title: `${p.day}: ${usd(p.cost_usd)}, ${num(p.requests)} requests` })), { label: 'Spend per day in USD', fmt: usd })
        : empty('No requests in this range yet.')),
    h('section.card', h('h2', 'Requests and errors per day'),
      r.requests ? lineChart(labels, [
        { name: 'requests', values: o.series.map((p) => p.requests), cls: 's1' },
        { name: 'errors', values: o.series.map((p) => p.errors), cls: 's3' }], { label: 'Requests and errors per day', fmt: (v) => num(Math.round(v)) })
        : empty('No requests in this range yet.')),
    h('section.card', h('h2', 'Latency per day'),
      r.requests ? lineChart(labels, [
        { name: 'p50', values: o.series.map((p) => p.p50_ms), cls: 's1' },
        { name: 'p95', values: o.series.map((p) => p.p95_ms), cls: 's2' }], { label: 'Latency p50 and p95 per day in milliseconds', fmt: (v) => ms(Math.round(v)) })
        : empty('No requests in this range yet.')),
    h('section.card', h('h2', 'Budgets'),
      o.budgets.length ? h('ul.budgets', o.budgets.map((b) => h('li',
        h('span.rank-name', h('a', { href: b.kind === 'key' ? `#/keys/${b.id}` : '#/teams' }, b.name), ' ', h('small', `${b.kind} · ${b.budget_period}`)),
        h('span.rank-val', `${usd(b.spent_usd)} of ${usd(b.budget_usd)}`),
        meter(Number(b.spent_usd), Number(b.budget_usd)))))
        : empty('No team or key has a budget. Set one on the Teams or Keys page.')));
  const top = (title, rows) => h('section.card', h('h2', title), rows.length ? rankList(rows, usd, title) : empty('Nothing yet.'));
  const tops = h('div.grid3',
    top('Top teams', o.top_teams.map((t) => ({ label: t.name || (t.id ? t.id.slice(0, 8) : 'no team'), value: Number(t.cost_usd), sub: `${num(t.requests)} requests` }))),
    top('Top keys', o.top_keys.map((k) => ({ node: k.id ? h('a', { href: `#/keys/${k.id}` }, k.name || k.id.slice(0, 8)) : 'no key',
      value: Number(k.cost_usd), sub: `${k.key_prefix ? `${k.key_prefix}… · ` : ''}${num(k.requests)} requests` }))),
    top('Top models', o.top_models.map((m) => ({ label: m.model || '(none)', value: Number(m.cost_usd), sub: `${num(m.requests)} requests` }))));
  clear(body, cards, charts, tops);
}
