// The gallery of a project, one run's artifacts (grouped by step, the steps in
// run order) and one session's (grouped by run, newest first): the same listing,
// newest first, with type filters, a name search, paging by next_cursor and live
// updates from the event feed. The gallery also shows the project's quota.

import { contentBlob, firstBytes, getQuota, listArtifacts } from './api.js';
import { h, replace, uiPath } from './dom.js';
import { age, humanSize } from './format.js';
import { decodeText, kindOf } from './preview.js';

// The listing's mime_class values, labelled as the filter buttons show them.
export const TYPES = [
  ['All', ''],
  ['Images', 'image'],
  ['HTML', 'html'],
  ['Code', 'code'],
  ['Text', 'text'],
  ['Other', 'other'],
];
const PAGE = 50;
const THUMB_LIMIT = 8 * 1024 * 1024; // larger images get no thumbnail (the page has them)
const SVG_THUMB_LIMIT = 1024 * 1024;
const THUMBS_AT_ONCE = 4;

function badgeOf(artifact) {
  const dot = artifact.name.lastIndexOf('.');
  const ext = dot > 0 ? artifact.name.slice(dot + 1) : '';
  return (ext && ext.length <= 5 ? ext : kindOf(artifact)).toUpperCase();
}

export function listingView(ctx, mode, key) {
  const { project } = ctx;
  const query = new URLSearchParams(location.search);
  const filters = {
    type: TYPES.some(([, value]) => value === query.get('type')) ? query.get('type') : '',
    name: query.get('name') || '',
    run: mode === 'gallery' ? query.get('run') || '' : '',
    session: mode === 'gallery' ? query.get('session') || '' : '',
  };
  const state = { items: [], cursor: null, generation: 0, fresh: new Set(), sawOffline: false };
  const thumbs = new Map(); // artifact id -> blob: URL, or null for none
  const pending = [];
  let running = 0;
  ctx.cleanup.push(() => {
    for (const url of thumbs.values()) if (url) URL.revokeObjectURL(url);
  });

  const params = () => ({
    mime_class: filters.type,
    name_prefix: filters.name,
    run_id: mode === 'run' ? key : filters.run,
    session_id: mode === 'session' ? key : filters.session,
    limit: PAGE,
  });

  // --- thumbnails: fetched with the token into blob: URLs, a few at a time, when seen
  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      observer.unobserve(entry.target);
      pending.push(entry.target);
    }
    pump();
  }, { rootMargin: '300px' });
  ctx.cleanup.push(() => observer.disconnect());
  const artifactOf = new WeakMap();

  function pump() {
    while (running < THUMBS_AT_ONCE && pending.length) {
      const el = pending.shift();
      running += 1;
      thumbnail(artifactOf.get(el)).then((url) => showThumb(el, url)).finally(() => {
        running -= 1;
        pump();
      });
    }
  }

  async function thumbnail(artifact) {
    if (thumbs.has(artifact.id)) return thumbs.get(artifact.id);
    let url = null;
    try {
      if (kindOf(artifact) === 'image') {
        // Only what the content API itself serves inline as that image type.
        const { blob, type, disposition } = await contentBlob(project, artifact.id, ctx.signal);
        if (disposition === 'inline' && type === artifact.mime) url = URL.createObjectURL(blob);
      } else {
        const { bytes, complete } = await firstBytes(project, artifact.id, artifact.size, SVG_THUMB_LIMIT, ctx.signal);
        const text = complete ? decodeText(bytes, true) : null;
        if (text !== null && /<svg[\s>]/i.test(text)) {
          url = URL.createObjectURL(new Blob([text], { type: 'image/svg+xml' }));
        }
      }
    } catch {
      url = null;
    }
    thumbs.set(artifact.id, url);
    return url;
  }

  function showThumb(el, url) {
    if (url) el.replaceChildren(h('img', { src: url, alt: '', loading: 'lazy', decoding: 'async' }));
    else el.classList.add('no-thumb');
  }

  // --- cards and groups
  function card(artifact) {
    const kind = kindOf(artifact);
    const thumb = h('div', { class: 'thumb', 'data-kind': kind }, h('span', { class: 'badge', text: badgeOf(artifact) }));
    const wantsThumb = (kind === 'image' && artifact.size <= THUMB_LIMIT) || (kind === 'svg' && artifact.size <= SVG_THUMB_LIMIT);
    if (wantsThumb && artifact.size > 0) {
      if (thumbs.has(artifact.id)) showThumb(thumb, thumbs.get(artifact.id));
      else {
        artifactOf.set(thumb, artifact);
        observer.observe(thumb);
      }
    }
    const lineage = artifact.lineage;
    return h('a', {
      class: state.fresh.has(artifact.id) ? 'card fresh' : 'card',
      href: uiPath('projects', project, 'artifacts', artifact.id),
      'data-id': artifact.id,
    },
    thumb,
    h('div', { class: 'card-body' },
      h('div', { class: 'card-name', title: artifact.name, text: artifact.name }),
      h('div', { class: 'card-meta' },
        h('span', { class: 'mime', text: artifact.mime }),
        h('span', { class: 'size', text: humanSize(artifact.size) }), ' · ',
        h('time', { datetime: artifact.created_at, title: artifact.created_at, text: age(artifact.created_at) })),
      h('div', { class: 'card-lineage', text: lineage ? `${lineage.run_id} · ${lineage.step_id}` : `${artifact.owner.kind} ${artifact.owner.id}` })));
  }

  function grid(items) {
    return h('div', { class: 'grid' }, items.map(card));
  }

  // A run's steps in run order: by the earliest artifact of each step (of those
  // loaded); a session's runs newest first, as the listing has them.
  function groups(items) {
    const by = new Map();
    const earliest = new Map();
    for (const artifact of items) {
      const lineage = artifact.lineage;
      const groupKey = lineage ? (mode === 'run' ? lineage.step_id : lineage.run_id) : '';
      if (!by.has(groupKey)) by.set(groupKey, []);
      by.get(groupKey).push(artifact);
      const at = Date.parse(artifact.created_at);
      if (!(earliest.get(groupKey) <= at)) earliest.set(groupKey, at);
    }
    const ordered = [...by];
    if (mode === 'run') ordered.sort(([a], [b]) => earliest.get(a) - earliest.get(b));
    return ordered.map(([groupKey, members]) => {
      let heading;
      if (!groupKey) heading = h('h2', { text: 'Not from a run' });
      else if (mode === 'run') heading = h('h2', {}, 'Step ', h('code', { text: groupKey }));
      else heading = h('h2', {}, 'Run ', h('a', { href: uiPath('projects', project, 'runs', groupKey) }, h('code', { text: groupKey })));
      return h('section', { class: 'group', 'data-group': groupKey }, heading, grid(members));
    });
  }

  function filterText() {
    const parts = [];
    if (mode === 'run') parts.push(`in run “${key}”`);
    if (mode === 'session') parts.push(`in session “${key}”`);
    if (filters.type) parts.push(`of type ${TYPES.find(([, v]) => v === filters.type)[0]}`);
    if (filters.name) parts.push(`with a name starting “${filters.name}”`);
    if (filters.run) parts.push(`in run “${filters.run}”`);
    if (filters.session) parts.push(`in session “${filters.session}”`);
    return parts.length ? parts.join(', ') : 'in this project';
  }

  // --- the page
  const live = h('span', { class: 'live', role: 'status' });
  const results = h('div', { class: 'results', 'aria-busy': 'true' });
  const status = h('p', { class: 'count', 'aria-live': 'polite' });
  const more = h('button', { type: 'button', class: 'more', hidden: true, onclick: () => load(false) }, 'Load more');
  const typeButtons = TYPES.map(([label, value]) =>
    h('button', { type: 'button', class: 'tab', 'data-type': value, 'aria-pressed': String(filters.type === value), onclick: () => {
      filters.type = value;
      typeButtons.forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.type === value)));
      changed();
    } }, label));
  const nameInput = h('input', { type: 'search', name: 'name', placeholder: 'Name starts with…', 'aria-label': 'Name starts with', value: filters.name });
  let typing;
  nameInput.addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      filters.name = nameInput.value;
      changed();
    }, 250);
  });
  ctx.cleanup.push(() => clearTimeout(typing));
  const textFilter = (field, label) => {
    const input = h('input', { type: 'search', name: field, placeholder: label, 'aria-label': label, value: filters[field] });
    input.addEventListener('change', () => {
      filters[field] = input.value.trim();
      changed();
    });
    return input;
  };

  let title;
  if (mode === 'gallery') title = h('h1', {}, 'Gallery');
  else if (mode === 'run') title = h('h1', {}, 'Run ', h('code', { text: key }));
  else title = h('h1', {}, 'Session ', h('code', { text: key }));
  const context = h('p', { class: 'context' });
  if (mode !== 'gallery') context.append(h('a', { href: uiPath('projects', project) }, 'All artifacts of ', h('code', { text: project })), ' · ');
  context.append(h('a', { class: 'runs-link', href: uiPath('projects', project, 'runs') }, 'Runs and sessions'));
  const quota = h('span', { class: 'quota', hidden: true });

  replace(ctx.main,
    h('div', { class: 'page-head' }, title, live, mode === 'gallery' ? quota : null),
    context,
    h('div', { class: 'filters' },
      h('div', { class: 'tabs', role: 'group', 'aria-label': 'Type' }, typeButtons),
      nameInput,
      mode === 'gallery' ? [textFilter('run', 'Run id'), textFilter('session', 'Session id')] : null),
    status, results, more);
  document.title = `${mode === 'gallery' ? project : key} · Artifacts`;

  // The quota, compact: bytes used of the limit, artifacts of the limit. A
  // failure only hides it (the listing says what went wrong, if anything).
  let quotaAsked = 0;
  async function showQuota() {
    if (mode !== 'gallery') return;
    const asked = ++quotaAsked;
    let q;
    try {
      q = await getQuota(project, ctx.signal);
    } catch {
      if (asked === quotaAsked) quota.hidden = true;
      return;
    }
    if (asked !== quotaAsked) return;
    const n = (value) => Number(value).toLocaleString('en');
    replace(quota, 'Quota ', h('span', { class: 'quota-bytes', text: `${humanSize(q.used_bytes)} of ${humanSize(q.limit_bytes)}` }),
      ' · ', h('span', { class: 'quota-count', text: `${n(q.artifact_count)} of ${n(q.limit_artifacts)} artifacts` }));
    quota.title = `${n(q.used_bytes)} of ${n(q.limit_bytes)} bytes used; ${n(q.artifact_count)} of ${n(q.limit_artifacts)} artifacts`;
    quota.classList.toggle('full', q.used_bytes >= q.limit_bytes || q.artifact_count >= q.limit_artifacts);
    quota.hidden = false;
  }
  let quotaTimer = null; // at most one look every 300 ms, however many events arrive
  const scheduleQuota = () => {
    if (quotaTimer !== null) return;
    quotaTimer = setTimeout(() => {
      quotaTimer = null;
      showQuota();
    }, 300);
  };
  ctx.cleanup.push(() => clearTimeout(quotaTimer));

  function changed() {
    const search = new URLSearchParams();
    if (filters.type) search.set('type', filters.type);
    if (filters.name) search.set('name', filters.name);
    if (filters.run) search.set('run', filters.run);
    if (filters.session) search.set('session', filters.session);
    const qs = search.toString();
    history.replaceState(history.state, '', location.pathname + (qs ? `?${qs}` : ''));
    load(true);
  }

  function render() {
    results.setAttribute('aria-busy', 'false');
    if (!state.items.length) {
      replace(results, h('div', { class: 'empty' },
        h('h2', { text: 'No artifacts' }),
        h('p', { text: `Nothing ${filterText()}. New artifacts appear here as they are published.` })));
    } else {
      replace(results, mode === 'gallery' ? grid(state.items) : groups(state.items));
    }
    more.hidden = !state.cursor;
    status.textContent = state.items.length
      ? `${state.items.length} artifact${state.items.length === 1 ? '' : 's'} ${filterText()}${state.cursor ? ', more below' : ''}`
      : '';
    if (mode === 'run' && !context.querySelector('.session-link')) {
      const session = state.items.find((a) => a.lineage?.session_id)?.lineage.session_id;
      if (session) {
        context.append(' · ', h('a', { class: 'session-link', href: uiPath('projects', project, 'sessions', session) }, 'Session ', h('code', { text: session })));
      }
    }
  }

  async function load(first) {
    const generation = first ? ++state.generation : state.generation;
    if (first) results.setAttribute('aria-busy', 'true');
    more.disabled = true;
    try {
      const page = await listArtifacts(project, { ...params(), cursor: first ? null : state.cursor }, ctx.signal);
      if (generation !== state.generation) return;
      const known = first ? new Set() : new Set(state.items.map((a) => a.id));
      state.items = first ? page.items : [...state.items, ...page.items.filter((a) => !known.has(a.id))];
      state.cursor = page.next_cursor;
      render();
    } catch (error) {
      if (generation === state.generation) ctx.fail(error);
    } finally {
      more.disabled = false;
    }
  }

  // New artifacts: the first page again, and whatever it holds that is not shown yet.
  let refreshTimer;
  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refresh, 150);
  }
  ctx.cleanup.push(() => clearTimeout(refreshTimer));

  async function refresh() {
    const generation = state.generation;
    let page;
    try {
      page = await listArtifacts(project, params(), ctx.signal);
    } catch {
      return; // the next event or reconnection tries again
    }
    if (generation !== state.generation) return;
    const known = new Set(state.items.map((a) => a.id));
    const fresh = page.items.filter((a) => !known.has(a.id));
    if (!fresh.length) return;
    if (state.items.length && fresh.length === page.items.length && page.next_cursor) {
      state.items = page.items; // more arrived than a page: start over from the newest
      state.cursor = page.next_cursor;
    } else {
      state.items = [...fresh, ...state.items];
    }
    for (const artifact of fresh) state.fresh.add(artifact.id);
    render();
  }

  ctx.cleanup.push(ctx.feed.subscribe((message) => {
    if (message.kind === 'state') {
      const texts = { connecting: 'connecting…', live: 'live', reconnecting: 'reconnecting…', stopped: 'live updates stopped' };
      live.textContent = texts[message.state] || message.state;
      live.dataset.state = message.state;
      if (message.state === 'live' && state.sawOffline) scheduleRefresh();
      state.sawOffline = message.state !== 'live';
      return;
    }
    const { event } = message;
    if (event.type === 'artifact.created' || event.type === 'artifact.deleted') scheduleQuota();
    if (event.type === 'artifact.created') scheduleRefresh();
    else if (event.type === 'artifact.deleted' && state.items.some((a) => a.id === event.artifact?.id)) {
      state.items = state.items.filter((a) => a.id !== event.artifact.id);
      render();
    }
  }));

  load(true);
  showQuota();
}
