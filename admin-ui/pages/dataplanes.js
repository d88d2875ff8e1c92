import { api, h, clear, num, when, ago, errorBox, empty, table, badge } from '../lib.js';

export async function render(main, _args, stale) {
  const list = h('div', h('p.loading', 'Loading…'));
  main.append(h('div.page-head', h('h1', 'Data planes')),
    h('p.sub', 'Gateway nodes that fetched a configuration snapshot from this control plane.'), list);
  let dps;
  let o;
  try {
    [dps, o] = await Promise.all([api('GET', '/api/dataplanes?limit=500'), api('GET', '/api/overview?days=1')]);
  } catch (e) {
    clear(list, errorBox(e));
    return;
  }
  if (stale()) return;
  const current = o.config_version;
  if (!dps.data.length) {
    clear(list, empty('No data plane has connected yet. Start a gateway with control_plane: pointing here.'));
    return;
  }
  clear(list, h('p', `Current configuration version: `, h('strong', num(current))), table([
    { label: 'Node', cell: (d) => h('span', h('strong', d.id), d.hostname && d.hostname !== d.id ? h('small', ` ${d.hostname}`) : null) },
    { label: 'State', cell: (d) => {
      const age = (Date.now() - new Date(d.last_seen).getTime()) / 1000;
      return age < 120 ? badge('connected', 'good') : badge('not seen recently', 'bad');
    } },
    { label: 'Version', cell: (d) => d.version || '—' },
    { label: 'Workers', cell: (d) => (d.workers ?? '—') },
    { label: 'Config version', cell: (d) => num(d.config_version) },
    { label: 'Lag', cell: (d) => {
      const lag = current - (d.config_version || 0);
      return lag <= 0 ? badge('up to date', 'good') : badge(`${num(lag)} behind`, 'bad');
    } },
    { label: 'Last seen', cell: (d) => h('span', { title: when(d.last_seen) }, ago(d.last_seen)) },
    { label: 'First seen', cell: (d) => when(d.first_seen).slice(0, 16) },
  ], dps.data, 'Data planes'));
}
