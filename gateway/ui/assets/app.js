// The artifact browser: routes, signing in, and the frame around each page.
//
//   /ui/                                      sign in, choose a project
//   /ui/projects/{project}                    the gallery
//   /ui/projects/{project}/runs               its runs and sessions (also …/sessions)
//   /ui/projects/{project}/runs/{run_id}      a run's artifacts, by step
//   /ui/projects/{project}/sessions/{id}      a session's artifacts, by run
//   /ui/projects/{project}/artifacts/{id}     one artifact
//
// `#token=<jwt>` on any of them signs in and is removed from the address bar
// (a fragment never reaches the server). A tab already signed in with another
// token is not switched silently (a link is anybody's to craft): a banner names
// the link's principal and asks, Switch or Keep; the same token again asks
// nothing.

import { ApiError, EventFeed, claimsOf, clearToken, expired, getToken, scopesOf, setToken } from './api.js';
import { artifactView } from './artifact.js';
import { h, replace, uiPath } from './dom.js';
import { listingView } from './listing.js';
import { projectView } from './project.js';

const main = document.getElementById('main');
const who = document.getElementById('who');
const crumbs = document.getElementById('crumbs');

let current = null; // the page shown: {controller, cleanup}
let feed = null; // the event feed of the project shown

// The banner offering a link's token to a tab signed in with another one.
const offer = h('section', { class: 'token-offer', 'aria-label': 'Sign-in link', hidden: true });
main.before(offer);

function principalOf(claims) {
  return h('code', { text: String(claims?.sub ?? 'unknown') });
}

function dismissOffer() {
  offer.hidden = true;
  replace(offer);
}

function switchTo(token) {
  dismissOffer();
  setToken(token);
  feed?.stop();
  feed = null;
  render();
}

function offerToken(token, signedIn) {
  const claims = claimsOf(token);
  const keep = h('button', { type: 'button', onclick: dismissOffer }, 'Keep ', principalOf(signedIn));
  if (!claims || expired(claims)) {
    replace(offer, h('p', { role: 'alert' },
      `The link carried a token that ${claims ? 'has expired' : 'is not valid'}; you are still signed in as `,
      principalOf(signedIn), '.'), h('div', { class: 'offer-buttons' }, keep));
  } else {
    const scopes = scopesOf(claims);
    replace(offer,
      h('p', { role: 'alert' }, 'This link signs you in as ', principalOf(claims),
        scopes.length ? ` (${scopes.join(' ')})` : '', '. You are signed in as ', principalOf(signedIn), '.'),
      h('div', { class: 'offer-buttons' },
        h('button', { type: 'button', class: 'primary', onclick: () => switchTo(token) }, 'Switch to ', principalOf(claims)),
        keep));
  }
  offer.hidden = false;
}

// A `#token=` fragment: removed from the address bar, then adopted if this tab is
// not signed in (no token, or an expired or unreadable one), ignored if it is
// the token already in use, and otherwise only offered. True when adopted.
function takeTokenFromFragment() {
  const match = /^#token=([^&]+)/.exec(location.hash);
  if (!match) return false;
  history.replaceState(history.state, '', location.pathname + location.search);
  let token;
  try {
    token = decodeURIComponent(match[1]).trim();
  } catch {
    return false;
  }
  const mine = getToken();
  const signedIn = mine ? claimsOf(mine) : null;
  if (!signedIn || expired(signedIn)) {
    dismissOffer();
    setToken(token);
    return true;
  }
  if (token !== mine) offerToken(token, signedIn);
  return false;
}

function route(pathname) {
  const parts = pathname.replace(/^\/ui\/?/, '').split('/').filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  if (!parts.length) return { page: 'home' };
  if (parts[0] !== 'projects' || parts.length < 2) return { page: 'unknown' };
  const project = parts[1];
  if (parts.length === 2) return { page: 'gallery', project };
  if (parts.length === 3 && (parts[2] === 'runs' || parts[2] === 'sessions')) return { page: 'project', project, key: parts[2] };
  if (parts.length === 4 && parts[2] === 'runs') return { page: 'run', project, key: parts[3] };
  if (parts.length === 4 && parts[2] === 'sessions') return { page: 'session', project, key: parts[3] };
  if (parts.length === 4 && parts[2] === 'artifacts') return { page: 'artifact', project, key: parts[3] };
  return { page: 'unknown' };
}

function feedFor(project) {
  if (feed && feed.project === project && feed.state !== 'stopped') return feed;
  feed?.stop();
  feed = new EventFeed(project);
  return feed;
}

function navigate(path, replaceEntry = false) {
  if (replaceEntry) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  render();
}

function header(where) {
  const token = getToken();
  const claims = token ? claimsOf(token) : null;
  replace(who, claims
    ? [h('span', { class: 'sub', title: scopesOf(claims).join(' ') }, String(claims.sub ?? 'signed in')),
      h('button', { type: 'button', class: 'link', onclick: () => {
        clearToken();
        feed?.stop();
        feed = null;
        render();
      } }, 'Sign out')]
    : []);
  replace(crumbs, where.project ? [' / ', h('a', { href: uiPath('projects', where.project) }, h('code', { text: where.project }))] : []);
}

// The sign-in page. `reason` (a sentence) says why a page needs a token; `again`
// says a token was there and is no more (refused, expired or unreadable): only
// then does the page ask to sign in "again".
function signIn(reason, again = false) {
  const token = getToken();
  const claims = token && !reason ? claimsOf(token) : null;
  const tokenInput = h('textarea', { id: 'token', name: 'token', rows: '4', spellcheck: 'false', autocomplete: 'off', placeholder: 'eyJhbGciOi…', required: !claims });
  const projectInput = h('input', { id: 'project', name: 'project', type: 'text', placeholder: 'demo', autocomplete: 'off', spellcheck: 'false' });
  const error = h('p', { class: 'error', role: 'alert' });
  const here = route(location.pathname);
  const form = h('form', { class: 'signin', novalidate: true },
    claims ? null : [h('label', { for: 'token' }, 'Principal token'), tokenInput,
      h('p', { class: 'hint' }, 'Kept in this tab only (sessionStorage), sent as an Authorization header, never as a cookie. ',
        h('code', { text: 'artifact-gateway dev' }), ' prints a link that signs in.')],
    here.page === 'home' ? [h('label', { for: 'project' }, 'Project'), projectInput] : null,
    error,
    h('button', { type: 'submit', class: 'primary' }, claims ? 'Open' : 'Sign in'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!claims) {
      const value = tokenInput.value.trim();
      const parsed = claimsOf(value);
      if (!parsed) {
        error.textContent = 'That is not a token: a JWT is three base64url parts separated by dots.';
        return;
      }
      if (expired(parsed)) {
        error.textContent = 'That token has expired.';
        return;
      }
      setToken(value);
    }
    const project = projectInput.value.trim();
    if (here.page === 'home' && project) navigate(uiPath('projects', project));
    else render();
  });
  const projects = Array.isArray(claims?.projects) ? claims.projects.filter((p) => p !== '*') : [];
  replace(main,
    h('div', { class: 'page-head' }, h('h1', { text: again ? 'Sign in again' : reason ? 'Sign in' : 'Artifact browser' })),
    reason ? h('p', again ? { class: 'error', role: 'alert', text: reason } : { class: 'lead', text: reason }) : null,
    claims ? h('p', {}, 'Signed in as ', h('code', { text: String(claims.sub) }), '. Choose a project.') : null,
    projects.length ? h('ul', { class: 'projects' }, projects.map((p) => h('li', {}, h('a', { href: uiPath('projects', p) }, h('code', { text: p }))))) : null,
    form);
  document.title = 'Artifacts';
  (claims ? projectInput : tokenInput).focus();
}

function failure(error) {
  if (error?.name === 'AbortError') return;
  if (error instanceof ApiError && error.status === 401) {
    clearToken();
    feed?.stop();
    feed = null;
    header(route(location.pathname));
    signIn(error.code === 'token_expired'
      ? 'Your token has expired: live updates stopped. Sign in again with a new one.'
      : `The gateway refused the token (${error.code || 'unauthenticated'}: ${error.message}). Sign in with a valid one.`, true);
    return;
  }
  let title = 'Something went wrong';
  let text = error?.message || String(error);
  if (error instanceof ApiError && error.status === 403) {
    title = 'Forbidden';
    text = `Your token may not do this: ${error.message}`;
  } else if (error instanceof ApiError && error.status === 404) {
    title = 'Not found';
    text = `${error.message}. The project or artifact does not exist, or your token may not see it.`;
  } else if (error instanceof ApiError) {
    title = `Error ${error.status}`;
    text = `${error.code ? `${error.code}: ` : ''}${error.message}`;
  } else if (error instanceof TypeError) {
    text = `The gateway did not answer (${error.message}).`;
  }
  replace(main, h('div', { class: 'failure' }, h('h1', { text: title }), h('p', { class: 'error', role: 'alert', text }),
    h('p', {}, h('a', { href: '/ui/' }, 'Start again'))));
}

function render() {
  current?.controller.abort();
  for (const undo of current?.cleanup ?? []) undo();
  const controller = new AbortController();
  current = { controller, cleanup: [] };
  const where = route(location.pathname);
  header(where);
  const token = getToken();
  const claims = token ? claimsOf(token) : null;
  if (!claims) {
    if (token) {
      clearToken();
      signIn('The token of this tab could not be read. Sign in with a valid one.', true);
    } else signIn(where.page === 'home' ? null : 'Sign in to see this page.');
    return;
  }
  if (expired(claims)) {
    clearToken();
    signIn('Your token has expired. Sign in with a new one.', true);
    return;
  }
  if (where.page === 'home') {
    signIn(null);
    return;
  }
  if (where.page === 'unknown') {
    replace(main, h('div', { class: 'failure' }, h('h1', { text: 'No such page' }), h('p', {}, h('a', { href: '/ui/' }, 'Start again'))));
    return;
  }
  const ctx = {
    main,
    project: where.project,
    signal: controller.signal,
    cleanup: current.cleanup,
    feed: feedFor(where.project),
    fail: (error) => {
      if (!controller.signal.aborted) failure(error);
    },
    navigate,
  };
  ctx.cleanup.push(ctx.feed.subscribe((m) => {
    if (m.kind === 'state' && m.error instanceof ApiError && m.error.status === 401) ctx.fail(m.error);
  }));
  if (where.page === 'artifact') artifactView(ctx, where.key);
  else if (where.page === 'project') projectView(ctx, where.key);
  else listingView(ctx, where.page, where.key);
}

document.addEventListener('click', (event) => {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const anchor = event.target.closest('a[href]');
  if (!anchor || anchor.hasAttribute('download') || anchor.target) return;
  const url = new URL(anchor.href);
  if (url.origin !== location.origin || !url.pathname.startsWith('/ui/')) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
});
window.addEventListener('popstate', render);
window.addEventListener('hashchange', () => {
  if (takeTokenFromFragment()) render();
});

takeTokenFromFragment();
render();
