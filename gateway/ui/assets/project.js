// A project's runs and sessions, newest first, with their artifact counts and
// total sizes. The API has no list of runs: they are derived from the listing,
// paged newest first, at most SCAN artifacts deep, and the page says how deep
// it looked (older runs may be missing, the oldest shown counted in part).

import { listArtifacts } from './api.js';
import { h, replace, uiPath } from './dom.js';
import { age, humanSize } from './format.js';

export const SCAN = 1000;
const PAGE = 200;

const time = (iso) => {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? 0 : t;
};

function tally(groups, key, artifact, extra) {
  let group = groups.get(key);
  if (!group) {
    group = { id: key, count: 0, bytes: 0, newest: artifact.created_at, ...extra() };
    groups.set(key, group);
  }
  group.count += 1;
  group.bytes += artifact.size;
  if (time(artifact.created_at) > time(group.newest)) group.newest = artifact.created_at;
  return group;
}

// Runs and sessions of a list of artifacts, each newest first (by its newest artifact).
export function summarise(items) {
  const runs = new Map();
  const sessions = new Map();
  const principal = { count: 0, bytes: 0 };
  for (const artifact of items) {
    const lineage = artifact.lineage;
    if (!lineage) {
      principal.count += 1;
      principal.bytes += artifact.size;
      continue;
    }
    const run = tally(runs, lineage.run_id, artifact, () => ({ steps: new Set(), sessions: new Set() }));
    run.steps.add(lineage.step_id);
    if (lineage.session_id) {
      run.sessions.add(lineage.session_id);
      tally(sessions, lineage.session_id, artifact, () => ({ runs: new Set() })).runs.add(lineage.run_id);
    }
  }
  const newestFirst = (groups) => [...groups.values()].sort((a, b) => time(b.newest) - time(a.newest));
  return { runs: newestFirst(runs), sessions: newestFirst(sessions), principal };
}

const plural = (n, one, many = `${one}s`) => `${n.toLocaleString('en')} ${n === 1 ? one : many}`;

export function projectView(ctx, focus) {
  const { project } = ctx;
  const live = h('span', { class: 'live', role: 'status' });
  const scope = h('p', { class: 'count scan', 'aria-live': 'polite' });
  const body = h('div', { class: 'results', 'aria-busy': 'true' }, h('p', { class: 'loading', text: 'Loading…' }));
  replace(ctx.main,
    h('div', { class: 'page-head' }, h('h1', { text: 'Runs and sessions' }), live),
    h('p', { class: 'context' }, h('a', { href: uiPath('projects', project) }, 'Gallery of ', h('code', { text: project }))),
    scope, body);
  document.title = `Runs · ${project} · Artifacts`;

  const runLink = (run) => h('a', { href: uiPath('projects', project, 'runs', run) }, h('code', { text: run }));
  const sessionLink = (session) => h('a', { href: uiPath('projects', project, 'sessions', session) }, h('code', { text: session }));
  const when = (iso) => h('time', { datetime: iso, title: iso, text: age(iso) });
  const size = (bytes) => h('span', { title: `${bytes.toLocaleString('en')} bytes`, text: humanSize(bytes) });
  const table = (label, heads, rows) => h('table', { class: 'summary', 'aria-label': label },
    h('thead', {}, h('tr', {}, heads.map((text, i) => h('th', { scope: 'col', class: i && text !== 'Latest' && text !== 'Session' ? 'number' : null, text })))),
    h('tbody', {}, rows));

  function show(items, complete) {
    const { runs, sessions, principal } = summarise(items);
    scope.textContent = complete
      ? `From all ${plural(items.length, 'artifact')} of the project (this page reads the newest ${SCAN.toLocaleString('en')} at most).`
      : `From the newest ${plural(items.length, 'artifact')} of the project only: older runs and sessions are not shown, and the oldest shown may be counted in part.`;
    const runRows = runs.map((run) => h('tr', { 'data-run': run.id },
      h('td', {}, runLink(run.id)),
      h('td', {}, [...run.sessions].map((s, i) => [i ? ', ' : '', sessionLink(s)])),
      h('td', { class: 'number', text: String(run.steps.size) }),
      h('td', { class: 'number artifacts', text: run.count.toLocaleString('en') }),
      h('td', { class: 'number bytes' }, size(run.bytes)),
      h('td', {}, when(run.newest))));
    const sessionRows = sessions.map((session) => h('tr', { 'data-session': session.id },
      h('td', {}, sessionLink(session.id)),
      h('td', { class: 'number', text: String(session.runs.size) }),
      h('td', { class: 'number artifacts', text: session.count.toLocaleString('en') }),
      h('td', { class: 'number bytes' }, size(session.bytes)),
      h('td', {}, when(session.newest))));
    const sessionsSection = h('section', { class: 'summary-section', id: 'sessions', 'aria-label': 'Sessions' },
      h('h2', { text: 'Sessions' }),
      sessionRows.length
        ? table('Sessions', ['Session', 'Runs', 'Artifacts', 'Size', 'Latest'], sessionRows)
        : h('p', { class: 'note', text: 'No artifact shown here belongs to a session.' }));
    body.setAttribute('aria-busy', 'false');
    replace(body,
      h('section', { class: 'summary-section', id: 'runs', 'aria-label': 'Runs' },
        h('h2', { text: 'Runs' }),
        runRows.length
          ? table('Runs', ['Run', 'Session', 'Steps', 'Artifacts', 'Size', 'Latest'], runRows)
          : h('p', { class: 'note', text: 'No run has published an artifact here.' })),
      sessionsSection,
      principal.count
        ? h('p', { class: 'note principal' }, `And ${plural(principal.count, 'artifact')} (${humanSize(principal.bytes)}) published by principals, not by a run: `,
          h('a', { href: uiPath('projects', project) }, 'in the gallery'), '.')
        : null);
    if (focus === 'sessions') sessionsSection.scrollIntoView();
  }

  let generation = 0;
  async function load() {
    const mine = ++generation;
    const items = [];
    let cursor = null;
    try {
      do {
        const page = await listArtifacts(project, { limit: Math.min(PAGE, SCAN - items.length), cursor }, ctx.signal);
        if (mine !== generation) return;
        items.push(...page.items);
        cursor = page.next_cursor;
      } while (cursor && items.length < SCAN);
    } catch (error) {
      if (mine === generation) ctx.fail(error);
      return;
    }
    show(items, !cursor);
  }

  // Artifacts published or deleted: look again a second later (at most once a
  // second, however many arrive).
  let again = null;
  ctx.cleanup.push(() => clearTimeout(again));
  ctx.cleanup.push(ctx.feed.subscribe((message) => {
    if (message.kind === 'state') {
      const texts = { connecting: 'connecting…', live: 'live', reconnecting: 'reconnecting…', stopped: 'live updates stopped' };
      live.textContent = texts[message.state] || message.state;
      live.dataset.state = message.state;
      return;
    }
    const type = message.event.type;
    if ((type === 'artifact.created' || type === 'artifact.deleted') && again === null) {
      again = setTimeout(() => {
        again = null;
        load();
      }, 1000);
    }
  }));

  load();
}
