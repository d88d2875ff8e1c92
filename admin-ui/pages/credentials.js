import {
  api, session, h, clear, when, errorBox, empty, table, dialog, confirmDialog, field, select, formValues, toast, listAll,
} from '../lib.js';

const PROVIDERS = ['openai', 'azure', 'anthropic', 'gemini', 'bedrock', 'ollama', 'openai_compatible', 'mock'];

export async function render(main, _args, stale) {
  const list = h('div', h('p.loading', 'Loading…'));
  main.append(h('div.page-head', h('h1', 'Provider credentials'),
    session.admin ? h('button.primary', { type: 'button', onclick: () => create(load) }, 'Add credential') : null),
  h('p.sub', 'Secrets are write-only: encrypted at rest with the master key, never shown again. Deployments use them as cred:<id>.'),
  list);
  async function load() {
    let creds;
    try {
      creds = await listAll('/api/credentials');
    } catch (e) {
      clear(list, errorBox(e));
      return;
    }
    if (stale()) return;
    if (!creds.length) {
      clear(list, empty('No credentials stored. Deployments can also read secrets from env: or file: references.'));
      return;
    }
    clear(list, table([
      { label: 'Name', cell: (c) => c.name },
      { label: 'Provider', cell: (c) => c.provider },
      { label: 'Secret', cell: (c) => h('code', c.hint || '••••') },
      { label: 'Reference', cell: (c) => h('code.wrap', c.ref) },
      { label: 'Master key', cell: (c) => h('code', c.key_fingerprint) },
      { label: 'Created', cls: 'nowrap', cell: (c) => when(c.created_at).slice(0, 10) },
      { label: 'Actions', cls: 'actions', cell: (c) => (session.admin ? h('button.danger.small', { type: 'button', 'aria-label': `Delete ${c.name}`,
        onclick: () => confirmDialog(`Delete ${c.name}?`, 'Models that reference it must be changed first.', 'Delete credential', async () => {
          await api('DELETE', `/api/credentials/${c.id}`);
          toast(`Deleted ${c.name}`);
          load();
        }) }, 'Delete') : '') },
    ], creds, 'Provider credentials'));
  }
  await load();
}

function create(reload) {
  dialog('Add credential', [
    field('Name', h('input', { name: 'name', required: true, maxlength: 200 })),
    field('Provider', select('provider', PROVIDERS.map((p) => [p, p]), 'openai')),
    field('Secret', h('input', { name: 'secret', type: 'password', required: true, autocomplete: 'off', spellcheck: 'false' }),
      'Sent once over this connection and stored encrypted; only its last 4 characters are ever shown.'),
  ], [
    { label: 'Cancel', kind: 'secondary' },
    { label: 'Store credential', kind: 'primary', submit: true, onclick: async (form) => {
      const f = formValues(form);
      form.elements.secret.value = '';
      await api('POST', '/api/credentials', f);
      toast(`Stored ${f.name}`);
      reload();
    } },
  ]);
}
