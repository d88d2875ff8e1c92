import {
  api, session, h, clear, usd, num, when, errorBox, empty, table, dialog, confirmDialog, field, select, formValues, toast, qs,
} from '../lib.js';
import { meter } from '../charts.js';

const PERIODS = [['', '—'], ['daily', 'daily'], ['weekly', 'weekly'], ['monthly', 'monthly'], ['total', 'total']];

export async function render(main, _args, stale) {
  const list = h('div', h('p.loading', 'Loading…'));
  main.append(h('div.page-head', h('h1', 'Teams'),
    session.admin ? h('button.primary', { type: 'button', onclick: () => edit(null, load) }, 'New team') : null), list);
  async function load() {
    let teams;
    let o;
    let s30;
    try {
      const from = new Date(Date.now() - 29 * 86400000).toISOString().slice(0, 10);
      [teams, o, s30] = await Promise.all([api('GET', '/api/teams?limit=500'), api('GET', `/api/overview${qs({ days: 1 })}`),
        api('GET', `/api/spend${qs({ group_by: 'team', from: `${from}T00:00:00Z` })}`)]);
    } catch (e) {
      clear(list, errorBox(e));
      return;
    }
    if (stale()) return;
    const spent = new Map(o.budgets.filter((b) => b.kind === 'team').map((b) => [b.id, Number(b.spent_usd)]));
    const spent30 = new Map(s30.data.map((g) => [g.group, g]));
    if (!teams.data.length) {
      clear(list, empty('No teams yet. Teams group keys under a shared budget and limits.'));
      return;
    }
    clear(list, table([
      { label: 'Name', cell: (t) => h('a', { href: `#/keys`, onclick: () => sessionStorage.setItem('gw.keys.team', t.id) }, t.name) },
      { label: 'Budget', cell: (t) => (t.budget_usd !== null && t.budget_usd !== undefined
        ? h('span.budget-cell', `${usd(spent.get(t.id) || 0)} of ${usd(t.budget_usd)} ${t.budget_period || 'total'}`, meter(spent.get(t.id) || 0, Number(t.budget_usd)))
        : '—') },
      { label: 'Limits', cell: (t) => [t.rpm_limit != null ? `${num(t.rpm_limit)} rpm` : null, t.tpm_limit != null ? `${num(t.tpm_limit)} tpm` : null].filter(Boolean).join(' · ') || '—' },
      { label: 'Spend, last 30 days', cls: 'num', cell: (t) => (spent30.has(t.id) ? usd(spent30.get(t.id).cost_usd) : usd(0)) },
      { label: 'Requests', cls: 'num', cell: (t) => num(spent30.has(t.id) ? spent30.get(t.id).requests : 0) },
      { label: 'Created', cls: 'nowrap', cell: (t) => when(t.created_at).slice(0, 10) },
      { label: 'Actions', cls: 'actions', cell: (t) => (session.admin ? h('span.row-actions',
        h('button.secondary.small', { type: 'button', 'aria-label': `Edit ${t.name}`, onclick: () => edit(t, load) }, 'Edit'),
        h('button.danger.small', { type: 'button', 'aria-label': `Delete ${t.name}`, onclick: () => remove(t, load) }, 'Delete')) : '') },
    ], teams.data, 'Teams'));
  }
  await load();
}

function edit(t, reload) {
  const v = (x) => (x === null || x === undefined ? '' : x);
  t = t || {};
  dialog(t.id ? `Edit ${t.name}` : 'New team', [
    field('Name', h('input', { name: 'name', required: true, maxlength: 200, value: v(t.name) })),
    h('div.row',
      field('Budget (USD)', h('input', { name: 'budget_usd', type: 'number', min: 0, step: '0.01', value: v(t.budget_usd), placeholder: 'no budget' })),
      field('Budget period', select('budget_period', PERIODS, t.budget_period))),
    h('div.row',
      field('Requests / minute', h('input', { name: 'rpm_limit', type: 'number', min: 0, step: 1, value: v(t.rpm_limit), placeholder: 'no limit' })),
      field('Tokens / minute', h('input', { name: 'tpm_limit', type: 'number', min: 0, step: 1, value: v(t.tpm_limit), placeholder: 'no limit' }))),
  ], [
    { label: 'Cancel', kind: 'secondary' },
    { label: t.id ? 'Save' : 'Create team', kind: 'primary', submit: true, onclick: async (form) => {
      const f = formValues(form, ['budget_usd', 'rpm_limit', 'tpm_limit']);
      const body = { name: f.name };
      for (const k of ['budget_usd', 'budget_period', 'rpm_limit', 'tpm_limit']) {
        const val = f[k] === '' ? null : f[k];
        if (t.id || val !== null) body[k] = val;
      }
      if (t.id) await api('PATCH', `/api/teams/${t.id}`, body); else await api('POST', '/api/teams', body);
      toast(t.id ? 'Saved' : `Team ${f.name} created`);
      reload();
    } },
  ]);
}

function remove(t, reload) {
  confirmDialog(`Delete ${t.name}?`, 'A team with active keys cannot be deleted: revoke or move its keys first.', 'Delete team', async () => {
    await api('DELETE', `/api/teams/${t.id}`);
    toast(`Deleted ${t.name}`);
    reload();
  });
}
