// The admin UI shell: sign-in (the token lives in sessionStorage only, sent
// as a bearer header, never in a URL), navigation and hash routing. Pages are
// ES modules loaded on first visit.
import { api, session, h, clear, errorBox, ApiError } from './lib.js';

const PAGES = [
  ['overview', 'Overview'],
  ['keys', 'Keys'],
  ['teams', 'Teams'],
  ['models', 'Models'],
  ['credentials', 'Credentials'],
  ['dataplanes', 'Data planes'],
  ['spend', 'Spend'],
  ['logs', 'Request log'],
  ['audit', 'Audit log'],
];

const root = document.getElementById('app');
let main = null;
let nav = null;

function signIn(message) {
  document.title = 'Sign in · Gateway admin';
  const input = h('input', { type: 'password', name: 'token', id: 'token', autocomplete: 'current-password',
    required: true, spellcheck: 'false', 'aria-describedby': 'token-hint' });
  const err = h('div', message ? errorBox(message) : null);
  const btn = h('button.primary', { type: 'submit' }, 'Sign in');
  const form = h('form.signin', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      btn.disabled = true;
      clear(err);
      try {
        session.me = await api('GET', '/api/me', undefined, token);
        session.set(token);
        input.value = '';
        shell();
      } catch (e) {
        clear(err, errorBox(e.status === 401 ? 'That token is not valid (or was revoked).' : e));
      } finally {
        btn.disabled = false;
      }
    },
  },
  h('h1', h('span.logo', { 'aria-hidden': 'true' }), 'Gateway admin'),
  h('label', { for: 'token' }, 'Admin token'),
  input,
  h('small', { id: 'token-hint' }, 'An admin or viewer token. It is kept in this tab only and sent to the API as a header.'),
  err, btn);
  clear(root, h('main.signin-wrap', form));
  input.focus();
}

function shell() {
  const me = session.me;
  nav = h('nav.side', { 'aria-label': 'Sections' },
    h('ul', PAGES.map(([id, label]) => h('li', h('a', { href: `#/${id}`, dataset: { page: id } }, label)))));
  const menu = h('button.icon.menu', { type: 'button', 'aria-label': 'Menu', 'aria-expanded': 'false',
    onclick: () => {
      const open = document.body.classList.toggle('nav-open');
      menu.setAttribute('aria-expanded', String(open));
    } }, '☰');
  main = h('main#main', { tabindex: '-1' });
  clear(root,
    h('a.skip', { href: '#main', onclick: (e) => { e.preventDefault(); main.focus(); } }, 'Skip to content'),
    h('header.top',
      menu,
      h('a.brand', { href: '#/overview' }, h('span.logo', { 'aria-hidden': 'true' }), 'Gateway admin'),
      h('span.who', h('span', me.name), ' ', h(`span.badge.${me.role}`, me.role === 'viewer' ? 'viewer · read-only' : me.role)),
      h('button.secondary.signout', { type: 'button', onclick: () => { session.clear(); session.me = null; location.hash = ''; signIn(); } }, 'Sign out')),
    h('div.layout', nav, main));
  document.body.classList.toggle('viewer', me.role !== 'admin');
  route();
}

let seq = 0;
async function route() {
  if (!session.me) return;
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const id = PAGES.some(([p]) => p === parts[0]) ? parts[0] : 'overview';
  const label = PAGES.find(([p]) => p === id)[1];
  document.title = `${label} · Gateway admin`;
  for (const a of nav.querySelectorAll('a')) {
    if (a.dataset.page === id) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  document.body.classList.remove('nav-open');
  const mine = ++seq;
  clear(main, h('p.loading', 'Loading…'));
  try {
    const mod = await import(`./pages/${id}.js`);
    if (mine !== seq) return;
    clear(main);
    await mod.render(main, parts.slice(1), () => mine !== seq);
  } catch (e) {
    if (mine === seq) clear(main, h('h1', label), errorBox(e instanceof ApiError ? e : `This page failed to load: ${e.message}`));
  }
}

window.addEventListener('hashchange', route);
window.addEventListener('gw:unauthorized', () => {
  session.clear();
  session.me = null;
  signIn('Your token is no longer valid: sign in again.');
});

async function boot() {
  const token = session.token();
  if (!token) { signIn(); return; }
  // fetch the first page's module while /api/me is in flight
  const first = location.hash.replace(/^#\/?/, '').split('/')[0];
  if (PAGES.some(([p]) => p === first) || !first) import(`./pages/${first || 'overview'}.js`).catch(() => {});
  try {
    session.me = await api('GET', '/api/me');
    shell();
  } catch (e) {
    if (e.status === 401) { session.clear(); signIn(); } else { clear(root, h('main.signin-wrap', errorBox(e))); }
  }
}
boot();
