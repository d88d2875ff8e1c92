import { api, h, clear, qs, when, errorBox, empty, table, pager, field, select, badge } from '../lib.js';

const state = { resource: '', action: '', offset: 0 };

export async function render(main, _args, stale) {
  const list = h('div', h('p.loading', 'Loading…'));
  const resource = select('resource', [['', 'All resources'], ...['keys', 'teams', 'models', 'credentials', 'admin_tokens'].map((r) => [r, r])], state.resource);
  const action = select('action', [['', 'All actions'], ...['create', 'update', 'delete', 'revoke', 'rotate'].map((a) => [a, a])], state.action);
  resource.addEventListener('change', () => { state.resource = resource.value; state.offset = 0; load(); });
  action.addEventListener('change', () => { state.action = action.value; state.offset = 0; load(); });
  main.append(h('div.page-head', h('h1', 'Audit log')),
    h('div.filters', { role: 'search', 'aria-label': 'Filter the audit log' }, field('Resource', resource), field('Action', action)), list);
  async function load() {
    let page;
    try {
      page = await api('GET', `/api/audit${qs({ resource: state.resource, action: state.action, limit: 50, offset: state.offset })}`);
    } catch (e) {
      clear(list, errorBox(e));
      return;
    }
    if (stale()) return;
    if (!page.data.length) {
      clear(list, empty('No admin actions recorded for these filters.'));
      return;
    }
    clear(list, table([
      { label: 'Time', cell: (a) => when(a.ts) },
      { label: 'Actor', cell: (a) => a.actor_name || a.actor },
      { label: 'Action', cell: (a) => badge(a.action, a.action === 'revoke' || a.action === 'delete' ? 'bad' : 'neutral') },
      { label: 'Resource', cell: (a) => `${a.resource} ${a.after && a.after.name ? a.after.name : a.before && a.before.name ? a.before.name : a.after && a.after.alias ? a.after.alias : ''}` },
      { label: 'Config', cell: (a) => (a.config_version ?? '—') },
      { label: 'Change', cell: (a) => h('details', h('summary', 'before / after'),
        h('div.diff', h('pre', { 'aria-label': 'before' }, a.before ? JSON.stringify(a.before, null, 2) : '—'),
          h('pre', { 'aria-label': 'after' }, a.after ? JSON.stringify(a.after, null, 2) : '—'))) },
    ], page.data, 'Audit log'), pager(page, (off) => { state.offset = off; load(); }));
  }
  await load();
}
