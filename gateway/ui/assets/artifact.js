// One artifact: every field, a preview chosen by its type, and Download, Copy
// link and Delete.

import { canDelete, claimsOf, deleteArtifact, getArtifact, getToken, signedUrl } from './api.js';
import { h, replace, uiPath } from './dom.js';
import { dateTime, humanSize } from './format.js';
import { renderPreview } from './preview.js';

const NAMES = 20; // the sources of "Derived from" whose names are looked up
const NAMES_AT_ONCE = 4;

const LINK_EXPIRIES = [
  ['5 minutes', 300],
  ['15 minutes', 900],
  ['1 hour', 3600],
];

function field(label, ...value) {
  return [h('dt', { text: label }), h('dd', {}, ...value)];
}

function code(text) {
  return h('code', { text: String(text) });
}

export async function artifactView(ctx, id) {
  const { project } = ctx;
  replace(ctx.main, h('p', { class: 'loading', text: 'Loading…' }));
  let artifact;
  try {
    artifact = await getArtifact(project, id, ctx.signal);
  } catch (error) {
    ctx.fail(error);
    return;
  }
  document.title = `${artifact.name} · Artifacts`;
  const runLink = (run) => h('a', { href: uiPath('projects', project, 'runs', run) }, code(run));
  const sessionLink = (session) => h('a', { href: uiPath('projects', project, 'sessions', session) }, code(session));
  const lineage = artifact.lineage;
  const owner = artifact.owner.kind === 'run' ? ['run ', runLink(artifact.owner.id)] : [`${artifact.owner.kind} `, code(artifact.owner.id)];
  const fields = h('dl', { class: 'fields' },
    field('Name', h('span', { class: 'name', text: artifact.name })),
    field('Size', `${humanSize(artifact.size)} (${artifact.size.toLocaleString('en')} bytes)`),
    field('Type', code(artifact.mime)),
    field('SHA-256', h('code', { class: 'hash', text: artifact.sha256 })),
    field('Created', h('time', { datetime: artifact.created_at, text: dateTime(artifact.created_at) })),
    artifact.state !== 'available' ? field('State', h('strong', { text: `${artifact.state} ${artifact.deleted_at ? dateTime(artifact.deleted_at) : ''}` })) : null,
    field('Owner', ...owner),
    lineage ? field('Run', runLink(lineage.run_id)) : null,
    lineage ? field('Step', code(lineage.step_id)) : null,
    lineage ? field('Job', code(lineage.job_id), ' attempt ', code(lineage.attempt)) : null,
    lineage ? field('Worker session', code(lineage.worker_session_id)) : null,
    lineage?.session_id ? field('Session', sessionLink(lineage.session_id)) : null,
    lineage ? null : field('Lineage', 'none (published by a principal)'),
    field('Published by', code(artifact.created_by)),
    artifact.description ? field('Description', h('p', { class: 'description', text: artifact.description })) : null,
    field('Metadata', h('pre', { class: 'metadata', text: JSON.stringify(artifact.metadata ?? {}, null, 2) }),
      artifact.metadata_omitted ? h('p', { class: 'note', text: `The stored metadata could not be served (${artifact.metadata_omitted}).` }) : null),
    artifact.derived_from.length ? field('Derived from', derivedFrom(ctx, artifact.derived_from)) : null,
    artifact.artifact_type ? field('Artifact type', code(artifact.artifact_type)) : null,
  );

  const message = h('p', { class: 'message', role: 'status' });
  const actions = h('div', { class: 'actions' });
  const preview = h('section', { class: 'preview', 'aria-label': 'Preview' });
  replace(ctx.main,
    h('div', { class: 'page-head' }, h('h1', { class: 'artifact-name', text: artifact.name })),
    h('p', { class: 'context' }, h('a', { href: uiPath('projects', project) }, 'Gallery of ', code(project)),
      lineage ? [' · ', h('a', { href: uiPath('projects', project, 'runs', lineage.run_id) }, 'Run ', code(lineage.run_id))] : null),
    actions, message, preview, h('h2', { text: 'Details' }), fields);

  if (artifact.state !== 'available') {
    replace(preview, h('p', { class: 'note', text: 'This artifact was deleted: its bytes are gone; this is its tombstone.' }));
    return;
  }
  actions.append(...buttons(ctx, artifact, message));
  ctx.cleanup.push(ctx.feed.subscribe((m) => {
    if (m.kind === 'event' && m.event.type === 'artifact.deleted' && m.event.artifact?.id === artifact.id) {
      message.textContent = 'This artifact has just been deleted.';
      actions.replaceChildren();
    }
  }));
  replace(preview, h('p', { class: 'loading', text: 'Loading the preview…' }));
  try {
    await renderPreview(preview, project, artifact, ctx.signal);
  } catch (error) {
    if (ctx.signal.aborted) return;
    replace(preview, h('p', { class: 'note', text: `No preview: ${error.message}` }));
  }
}

// The sources an artifact was derived from, linked, by name: each of the first
// NAMES is read (a few at a time); one that cannot be read with this token (or
// beyond NAMES) keeps its id as its link's text.
function derivedFrom(ctx, ids) {
  const { project } = ctx;
  const items = ids.map((source) => {
    const anchor = h('a', { href: uiPath('projects', project, 'artifacts', source), 'data-id': source }, code(source));
    return { source, anchor, li: h('li', {}, anchor) };
  });
  const queue = items.slice(0, NAMES);
  const worker = async () => {
    while (queue.length && !ctx.signal.aborted) {
      const { source, anchor, li } = queue.shift();
      let found;
      try {
        found = await getArtifact(project, source, ctx.signal);
      } catch {
        anchor.title = 'Not readable with this token';
        continue;
      }
      replace(anchor, h('span', { class: 'name', text: found.name }));
      anchor.title = source;
      li.append(h('code', { class: 'id', text: source }));
      if (found.state !== 'available') li.append(` (${found.state})`);
    }
  };
  for (let i = 0; i < NAMES_AT_ONCE; i += 1) worker();
  return [
    h('ul', { class: 'derived' }, items.map((item) => item.li)),
    ids.length > NAMES ? h('p', { class: 'note', text: `Names are shown for the first ${NAMES} of ${ids.length}.` }) : null,
  ];
}

function buttons(ctx, artifact, message) {
  const { project } = ctx;
  const say = (text) => {
    message.textContent = text;
  };
  const download = h('button', { type: 'button', class: 'primary', onclick: async () => {
    // A signed URL and the download attribute: the browser saves the exact bytes,
    // streamed, without holding them in the page.
    try {
      const { url } = await signedUrl(project, artifact.id, 60, ctx.signal);
      const anchor = h('a', { href: url, download: artifact.name, hidden: true });
      document.body.append(anchor);
      anchor.click();
      anchor.remove();
      say('Download started.');
    } catch (error) {
      say(`Download failed: ${error.message}`);
    }
  } }, 'Download');

  const expiry = h('select', { 'aria-label': 'Link expires after' },
    LINK_EXPIRIES.map(([label, seconds]) => h('option', { value: String(seconds) }, label)));
  const shown = h('input', { type: 'text', readonly: true, class: 'signed-url', 'aria-label': 'Signed link', hidden: true });
  const copy = h('button', { type: 'button', onclick: async () => {
    try {
      const { url, expires_at: expiresAt } = await signedUrl(project, artifact.id, Number(expiry.value), ctx.signal);
      shown.value = url;
      shown.hidden = false;
      try {
        await navigator.clipboard.writeText(url);
        say(`Link copied; it works without a token until ${dateTime(expiresAt)}.`);
      } catch {
        shown.select();
        say(`Copy the link below; it works without a token until ${dateTime(expiresAt)}.`);
      }
    } catch (error) {
      say(`No link: ${error.message}`);
    }
  } }, 'Copy link');

  const result = [download, h('span', { class: 'link-group' }, copy, expiry), shown];
  if (canDelete(claimsOf(getToken()), artifact)) {
    const dialog = h('dialog', { class: 'confirm' },
      h('form', { method: 'dialog' },
        h('p', {}, 'Delete ', h('strong', { text: artifact.name }), '? Its bytes are removed for good; a tombstone remains.'),
        h('div', { class: 'dialog-buttons' },
          h('button', { value: 'cancel', type: 'submit' }, 'Cancel'),
          h('button', { value: 'delete', type: 'submit', class: 'danger' }, 'Delete'))));
    dialog.addEventListener('close', async () => {
      if (dialog.returnValue !== 'delete') return;
      try {
        await deleteArtifact(project, artifact.id);
        ctx.navigate(location.pathname, true);
      } catch (error) {
        say(`Not deleted: ${error.message}`);
      }
    });
    ctx.main.append(dialog);
    result.push(h('button', { type: 'button', class: 'danger', onclick: () => {
      dialog.returnValue = '';
      dialog.showModal();
    } }, 'Delete'));
  }
  return result;
}
