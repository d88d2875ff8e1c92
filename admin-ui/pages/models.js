import {
  api, session, h, clear, when, errorBox, empty, table, dialog, confirmDialog, field, select, formValues, toast, listAll,
} from '../lib.js';

const STRATEGIES = ['weighted', 'least_latency', 'least_cost', 'usage', 'classifier'];

export async function render(main, _args, stale) {
  const list = h('div', h('p.loading', 'Loading…'));
  const abPanel = h('section.ab-panel', { 'aria-label': 'Evaluated A/B' });
  main.append(h('div.page-head', h('h1', 'Models & deployments'),
    session.admin ? h('button.primary', { type: 'button', onclick: () => edit(null, load) }, 'New model alias') : null),
  h('p.sub', 'An alias is what clients ask for; the gateway routes it to one of its deployments by the strategy, and to the fallbacks when they all fail.'),
  list, abPanel);
  async function load() {
    let models;
    let creds;
    try {
      [models, creds] = await Promise.all([listAll('/api/models'), listAll('/api/credentials')]);
    } catch (e) {
      clear(list, errorBox(e));
      return;
    }
    if (stale()) return;
    const credName = new Map(creds.map((c) => [`cred:${c.id}`, c.name]));
    if (!models.length) {
      clear(list, empty('No model aliases yet.'));
      return;
    }
    clear(list, table([
      { label: 'Alias', cell: (m) => h('code', m.alias) },
      { label: 'Strategy', cell: (m) => m.strategy },
      { label: 'Deployments', cell: (m) => h('ul.deps', m.deployments.map((d) => h('li',
        h('strong', d.provider), d.model ? ` ${d.model}` : '', d.weight !== undefined ? h('small', ` weight ${d.weight}`) : null,
        d.base_url ? h('small', ` ${d.base_url}`) : null,
        d.api_key ? h('small', ` · key ${credName.get(d.api_key) ? `credential ${credName.get(d.api_key)}` : d.api_key}`) : null))) },
      { label: 'Fallbacks', cell: (m) => (m.fallbacks && m.fallbacks.length ? m.fallbacks.join(' → ') : '—') },
      { label: 'Cache', cell: (m) => (m.cache ? JSON.stringify(m.cache) : '—') },
      { label: 'Updated', cls: 'nowrap', cell: (m) => when(m.updated_at).slice(0, 10) },
      { label: 'Actions', cls: 'actions', cell: (m) => (session.admin ? h('span.row-actions',
        h('button.secondary.small', { type: 'button', 'aria-label': `Edit ${m.alias}`, onclick: () => edit(m, load) }, 'Edit'),
        h('button.danger.small', { type: 'button', 'aria-label': `Delete ${m.alias}`, onclick: () => remove(m, load) }, 'Delete')) : '') },
    ], models, 'Model aliases'));
    loadAb(abPanel, stale);
  }
  await load();
}

const pct = (x) => `${(x * 100).toFixed(1)}%`;

/* Evaluated A/B (GET /api/ab): each split alias with a judge, its variants' win rates (a tie is half a win). */
async function loadAb(panel, stale) {
  let doc;
  try {
    doc = await api('GET', '/api/ab');
  } catch (e) {
    if (!stale()) clear(panel, errorBox(e));
    return;
  }
  if (stale()) return;
  if (!doc.data.length) {
    clear(panel);
    return;
  }
  const rows = doc.data.flatMap((t) => t.variants.map((v) => ({ ...v, test: t })));
  clear(panel, h('h2', 'Evaluated A/B'),
    h('p.sub', 'Sampled requests of an alias with a traffic split are answered by the other variant too, off the request path, and a judge alias says which answer is better. A tie counts as half a win; the interval is 95% (Wilson).'),
    table([
      { label: 'Alias', cell: (r) => (r.variant === 'a' ? h('code', r.test.alias) : '') },
      { label: 'Variant', cell: (r) => h('span', `${r.variant.toUpperCase()} `, h('code', r.alias)) },
      { label: 'Win rate', cell: (r) => h('span', h('meter', { min: 0, max: 1, value: r.win_rate, title: pct(r.win_rate) }), ` ${pct(r.win_rate)}`) },
      { label: '95% interval', cls: 'nowrap', cell: (r) => `${pct(r.ci95_low)} – ${pct(r.ci95_high)}` },
      { label: 'Wins / ties / losses', cell: (r) => `${r.wins} / ${r.ties} / ${r.losses}` },
      { label: 'Verdicts', cell: (r) => (r.variant === 'a' ? String(r.test.verdicts) : '') },
      { label: 'Judge', cell: (r) => (r.variant === 'a' ? h('code', r.test.judge_alias) : '') },
    ], rows, 'A/B win rates'));
}

function edit(m, reload) {
  const deps = m ? JSON.stringify(m.deployments, null, 2)
    : JSON.stringify([{ provider: 'openai', model: 'gpt-4o-mini', api_key: 'cred:<credential id>', weight: 1 }], null, 2);
  dialog(m ? `Edit ${m.alias}` : 'New model alias', [
    field('Alias', h('input', { name: 'alias', required: true, maxlength: 200, value: m ? m.alias : '', readonly: m ? true : null })),
    field('Strategy', select('strategy', STRATEGIES.map((s) => [s, s]), m ? m.strategy : 'weighted')),
    field('Deployments (JSON array)', h('textarea', { name: 'deployments', rows: 8, spellcheck: 'false', value: deps }),
      'Secrets only by reference: env:NAME, file:/path or cred:<credential id> (see Credentials).'),
    field('Fallbacks', h('input', { name: 'fallbacks', value: m && m.fallbacks ? m.fallbacks.join(', ') : '', placeholder: 'other aliases, in order' })),
  ], [
    { label: 'Cancel', kind: 'secondary' },
    { label: m ? 'Save' : 'Create', kind: 'primary', submit: true, onclick: async (form) => {
      const f = formValues(form);
      let deployments;
      try {
        deployments = JSON.parse(f.deployments);
      } catch (e) {
        throw new Error(`Deployments is not valid JSON: ${e.message}`);
      }
      const body = { strategy: f.strategy, deployments, fallbacks: f.fallbacks.split(',').map((s) => s.trim()).filter(Boolean) };
      if (m) await api('PATCH', `/api/models/${encodeURIComponent(m.alias)}`, body);
      else await api('POST', '/api/models', { alias: f.alias, ...body });
      toast('Saved');
      reload();
    } },
  ]);
}

function remove(m, reload) {
  confirmDialog(`Delete ${m.alias}?`, 'Clients asking for this alias get 404 once the data planes have the change.', 'Delete alias', async () => {
    await api('DELETE', `/api/models/${encodeURIComponent(m.alias)}`);
    toast(`Deleted ${m.alias}`);
    reload();
  });
}
