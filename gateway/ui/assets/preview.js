// Previews of an artifact's bytes, chosen by its type. Bytes come from the
// content API (with the token, or a short-lived signed URL for media); the content
// API's own headers are never relaxed. Whatever the artifact controls reaches
// the DOM as text, or as the sanitiser's output (DOMPurify, an allowlist).

import { firstBytes, headContent, signedUrl } from './api.js';
import { h, replace } from './dom.js';
import { humanSize, parseCsv, prettyJson } from './format.js';

const VENDOR = '/ui/vendor';
export const TEXT_LIMIT = 256 * 1024; // the first part of a text shown
const RENDER_LIMIT = 2 * 1024 * 1024; // HTML and SVG are rendered only when whole and smaller
const HIGHLIGHT_LIMIT = 256 * 1024;
const CSV_ROWS = 200;

// The inline allowlist of the content API (docs/api.md, "Reading").
export const INLINE_IMAGES = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/avif', 'image/apng']);
const VIDEO = new Set(['video/mp4', 'video/webm', 'video/ogg']);
const AUDIO = new Set(['audio/mpeg', 'audio/ogg', 'audio/wav', 'audio/webm', 'audio/flac', 'audio/aac', 'audio/mp4']);
const HTML = new Set(['text/html', 'application/xhtml+xml']);
const XML = new Set(['text/xml', 'application/xml']);

const LANGUAGES = {
  py: 'python', pyi: 'python', js: 'javascript', mjs: 'javascript', cjs: 'javascript',
  ts: 'typescript', tsx: 'typescript', jsx: 'javascript', go: 'go', rs: 'rust', c: 'c',
  h: 'c', cc: 'cpp', cpp: 'cpp', cxx: 'cpp', hpp: 'cpp', cs: 'csharp', java: 'java',
  kt: 'kotlin', kts: 'kotlin', swift: 'swift', rb: 'ruby', pl: 'perl', php: 'php', r: 'r',
  lua: 'lua', sh: 'bash', bash: 'bash', zsh: 'bash', sql: 'sql', css: 'css', scss: 'scss',
  less: 'less', yaml: 'yaml', yml: 'yaml', toml: 'ini', ini: 'ini', cfg: 'ini',
  json: 'json', xml: 'xml', svg: 'xml', html: 'xml', htm: 'xml', xhtml: 'xml', md: 'markdown',
  markdown: 'markdown', diff: 'diff', patch: 'diff', graphql: 'graphql', mk: 'makefile',
};
const MIME_LANGUAGES = {
  'text/x-python': 'python', 'text/x-script.python': 'python', 'text/x-c': 'c',
  'text/x-csrc': 'c', 'text/x-chdr': 'c', 'text/x-c++src': 'cpp', 'text/x-c++hdr': 'cpp',
  'text/x-java': 'java', 'text/x-java-source': 'java', 'text/x-go': 'go', 'text/x-rust': 'rust',
  'text/x-shellscript': 'bash', 'text/x-sh': 'bash', 'application/x-sh': 'bash',
  'text/x-yaml': 'yaml', 'application/yaml': 'yaml', 'application/x-yaml': 'yaml',
  'application/toml': 'ini', 'text/x-toml': 'ini', 'text/x-diff': 'diff', 'text/x-patch': 'diff',
  'text/x-sql': 'sql', 'application/sql': 'sql', 'text/x-ruby': 'ruby', 'text/x-perl': 'perl',
  'text/x-lua': 'lua', 'text/x-kotlin': 'kotlin', 'text/x-typescript': 'typescript',
  'application/typescript': 'typescript', 'text/css': 'css', 'application/json': 'json',
  'text/markdown': 'markdown',
};
// The WHATWG "JavaScript MIME type" list: the gateway serves them all as downloads
// (application/octet-stream); the page shows their text as source.
for (const mime of ['application/ecmascript', 'application/javascript', 'application/x-ecmascript',
  'application/x-javascript', 'text/ecmascript', 'text/javascript', 'text/javascript1.0',
  'text/javascript1.1', 'text/javascript1.2', 'text/javascript1.3', 'text/javascript1.4',
  'text/javascript1.5', 'text/jscript', 'text/livescript', 'text/x-ecmascript', 'text/x-javascript']) {
  MIME_LANGUAGES[mime] = 'javascript';
}

function extension(name) {
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(dot + 1).toLowerCase() : '';
}

export function languageOf(artifact) {
  if (extension(artifact.name) === 'makefile' || artifact.name === 'Makefile') return 'makefile';
  return LANGUAGES[extension(artifact.name)] || MIME_LANGUAGES[artifact.mime] || 'plaintext';
}

// What the page offers for this artifact, by its declared type (and name).
export function kindOf(artifact) {
  const mime = artifact.mime;
  const ext = extension(artifact.name);
  if (INLINE_IMAGES.has(mime)) return 'image';
  if (mime === 'image/svg+xml') return 'svg';
  if (VIDEO.has(mime)) return 'video';
  if (AUDIO.has(mime)) return 'audio';
  if (HTML.has(mime)) return 'html';
  if (XML.has(mime) || (mime.startsWith('application/') && mime.endsWith('+xml'))) return 'xml';
  if (mime === 'text/markdown' || ext === 'md' || ext === 'markdown') return 'markdown';
  if (mime === 'text/csv' || ext === 'csv') return 'csv';
  if (mime === 'application/json' || ext === 'json') return 'json';
  if (mime.startsWith('text/') || MIME_LANGUAGES[mime] || LANGUAGES[ext]) return 'code';
  return 'none';
}

// --- the vendored libraries, loaded on first use ---------------------------------

let highlighter;
let markdown;
let purifiers;

function hljs() {
  highlighter ??= import(`${VENDOR}/highlight-11.12.0/highlight.min.js`).then((m) => m.default);
  return highlighter;
}

async function sanitisers() {
  purifiers ??= import(`${VENDOR}/dompurify-3.5.0/purify.es.mjs`).then(({ default: DOMPurify }) => {
    // Markdown: the tags markdown produces, links to http(s)/mailto only, images
    // only from this origin. Highlighted code: <span class> only.
    const md = DOMPurify(window);
    md.addHook('afterSanitizeAttributes', (node) => {
      if (node.hasAttribute('href')) {
        const url = safeUrl(node.getAttribute('href'));
        if (!url || !['http:', 'https:', 'mailto:'].includes(url.protocol)) node.removeAttribute('href');
        else {
          node.setAttribute('rel', 'noopener noreferrer');
          node.setAttribute('target', '_blank');
        }
      }
      if (node.hasAttribute('src')) {
        const url = safeUrl(node.getAttribute('src'));
        if (!url || url.origin !== location.origin) {
          node.removeAttribute('src');
          node.setAttribute('alt', `[image not loaded: only images of this gateway are shown] ${node.getAttribute('alt') || ''}`);
        }
      }
      if (node.hasAttribute('class') && !(node.tagName === 'CODE' && /^language-[\w+#.-]+$/.test(node.getAttribute('class')))) {
        node.removeAttribute('class');
      }
    });
    const code = DOMPurify(window);
    return { md, code };
  });
  return purifiers;
}

function safeUrl(value) {
  try {
    return new URL(value, location.href);
  } catch {
    return null;
  }
}

const MARKDOWN_CONFIG = {
  ALLOWED_TAGS: ['h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'p', 'br', 'hr', 'blockquote', 'pre', 'code',
    'em', 'strong', 'del', 'ul', 'ol', 'li', 'a', 'img', 'table', 'thead', 'tbody', 'tr', 'th', 'td'],
  ALLOWED_ATTR: ['href', 'title', 'alt', 'src', 'align', 'start', 'class'],
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};
const CODE_CONFIG = {
  ALLOWED_TAGS: ['span'],
  ALLOWED_ATTR: ['class'],
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

function escapeHtml(text) {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

async function markdownParser() {
  markdown ??= import(`${VENDOR}/marked-18.2.1/marked.esm.js`).then(
    // Raw HTML in markdown is shown as text, never passed through.
    ({ Marked }) => new Marked({ gfm: true, async: false, renderer: { html: (token) => escapeHtml(token.text) } }),
  );
  return markdown;
}

// --- building blocks ---------------------------------------------------------------

// UTF-8 text, or null for bytes that are not (a NUL, an invalid sequence).
export function decodeText(bytes, complete) {
  if (bytes.includes(0)) return null;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes, { stream: !complete });
    // a part ends at its last line break, so no line is shown cut
    const end = text.lastIndexOf('\n');
    return complete || end < 0 ? text : text.slice(0, end + 1);
  } catch {
    return null;
  }
}

async function highlighted(text, language) {
  const code = h('code', { class: `hljs language-${language}` });
  if (language === 'plaintext' || text.length > HIGHLIGHT_LIMIT) {
    code.textContent = text;
    return code;
  }
  const [lib, { code: purify }] = await Promise.all([hljs(), sanitisers()]);
  if (!lib.getLanguage(language)) {
    code.textContent = text;
    return code;
  }
  const html = lib.highlight(text, { language, ignoreIllegals: true }).value;
  code.append(purify.sanitize(html, CODE_CONFIG));
  return code;
}

// Source with line numbers: a gutter beside the (highlighted) code.
export async function sourceView(text, language) {
  const count = text.endsWith('\n') ? text.split('\n').length - 1 : text.split('\n').length;
  const numbers = Array.from({ length: Math.max(count, 1) }, (_, i) => String(i + 1)).join('\n');
  return h('div', { class: 'source', 'data-language': language },
    h('pre', { class: 'gutter', 'aria-hidden': 'true', text: numbers }),
    h('pre', { class: 'code' }, await highlighted(text, language)));
}

function note(...children) {
  return h('p', { class: 'note' }, ...children);
}

function partNote(artifact, shown) {
  return note(`Showing the first ${humanSize(shown)} of ${humanSize(artifact.size)}; download the artifact for all of it.`);
}

async function markdownView(text) {
  const [parser, { md }] = await Promise.all([markdownParser(), sanitisers()]);
  const fragment = md.sanitize(parser.parse(text), MARKDOWN_CONFIG);
  const article = h('article', { class: 'markdown' });
  article.append(fragment);
  for (const block of article.querySelectorAll('pre > code')) {
    const language = (block.getAttribute('class') || '').replace(/^language-/, '') || 'plaintext';
    block.replaceWith(await highlighted(block.textContent, language.toLowerCase()));
  }
  return article;
}

function csvView(text, complete) {
  const { rows, more } = parseCsv(text, CSV_ROWS, complete);
  if (!rows.length) return note('An empty table.');
  const [head, ...body] = rows;
  const width = Math.max(...rows.map((r) => r.length));
  const cells = (row, tag) => Array.from({ length: width }, (_, i) => h(tag, { text: row[i] ?? '' }));
  return h('div', { class: 'csv' },
    h('table', {},
      h('thead', {}, h('tr', {}, cells(head, 'th'))),
      h('tbody', {}, body.map((row) => h('tr', {}, cells(row, 'td'))))),
    more ? note(`The first ${rows.length - 1} rows.`) : null);
}

function toggle(labels, views) {
  const area = h('div', { class: 'toggled' });
  const buttons = labels.map((label, i) =>
    h('button', { type: 'button', class: 'tab', 'aria-pressed': String(i === 0), onclick: async () => {
      buttons.forEach((b, j) => b.setAttribute('aria-pressed', String(i === j)));
      replace(area, await views[i]());
    } }, label));
  return { bar: h('div', { class: 'tabs', role: 'group' }, buttons), area, show: async () => replace(area, await views[0]()) };
}

// What an HTML preview may load: nothing at all. Its document would otherwise
// inherit only this page's policy, under which images, media, prefetches and
// stylesheets of this origin (the gateway's own URLs) still load from the
// viewer's browser.
export const PREVIEW_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'";

// The document of an HTML preview: the artifact's markup after a doctype and a
// <meta> Content-Security-Policy, the first element the parser sees, so the
// policy holds before any element of the artifact is parsed (the artifact's own
// doctype, <html> and <head> merge into these, and no policy it declares can
// loosen this one: policies only add up).
export function previewDocument(text) {
  return `<!DOCTYPE html><meta http-equiv="Content-Security-Policy" content="${PREVIEW_POLICY}">${text}`;
}

// The sandboxed frame of an HTML preview: no scripts, forms, popups, top
// navigation, automatic features (meta refresh) or same-origin; its srcdoc
// document carries PREVIEW_POLICY and inherits this page's policy too.
export function sandboxedFrame(text, title) {
  const frame = h('iframe', { class: 'html-preview', sandbox: '', referrerpolicy: 'no-referrer', title });
  frame.srcdoc = previewDocument(text);
  return frame;
}

function looksLikeMarkup(text) {
  return /^\s*(?:<!--[\s\S]*?-->\s*|<\?xml[^>]*>\s*)*</.test(text) || /<(?:!doctype|html|head|body|svg)[\s>]/i.test(text.slice(0, 4096));
}

// --- the preview of one artifact --------------------------------------------------

export async function renderPreview(container, project, artifact, signal) {
  const kind = kindOf(artifact);
  if (artifact.size === 0) return replace(container, note('An empty file.'));
  if (kind === 'none') {
    return replace(container, note(`No preview for ${artifact.mime}: use Download.`));
  }
  if (kind === 'image' || kind === 'video' || kind === 'audio') {
    const served = await headContent(project, artifact.id, signal);
    if (served.disposition === 'inline' && served.type === artifact.mime) {
      // A short-lived signed URL: the browser streams (and seeks) the bytes itself.
      const { url } = await signedUrl(project, artifact.id, kind === 'image' ? 300 : 3600, signal);
      if (kind === 'image') {
        const img = h('img', { class: 'full fit', src: url, alt: artifact.name });
        img.addEventListener('click', () => img.classList.toggle('fit'));
        return replace(container, h('div', { class: 'image-frame' }, img),
          note('Full resolution: click the image to switch between fitting the page and its actual size.'));
      }
      return replace(container, h(kind, { class: 'player', controls: true, preload: 'metadata', src: url }));
    }
    return mismatch(container, project, artifact, signal);
  }
  const limit = kind === 'html' || kind === 'svg' ? RENDER_LIMIT : TEXT_LIMIT;
  const { bytes, complete } = await firstBytes(project, artifact.id, artifact.size, limit, signal);
  const text = decodeText(bytes, complete);
  if (text === null) {
    return replace(container, note(`The bytes are not UTF-8 text, though the type says ${artifact.mime}: no preview. Use Download.`));
  }
  const part = complete ? null : partNote(artifact, bytes.length);
  const language = languageOf(artifact);
  if (kind === 'markdown') {
    const { bar, area, show } = toggle(['Rendered', 'Source'], [() => markdownView(text), () => sourceView(text, 'markdown')]);
    replace(container, part, bar, area);
    return show();
  }
  if (kind === 'csv') {
    const { bar, area, show } = toggle(['Table', 'Source'], [() => csvView(text, complete), () => sourceView(text, 'plaintext')]);
    replace(container, part, bar, area);
    return show();
  }
  if (kind === 'json') {
    let valid = complete;
    if (valid) {
      try {
        JSON.parse(text);
      } catch {
        valid = false;
      }
    }
    return replace(container, part, valid ? null : note('Not valid JSON (or only its first part): shown as it is.'),
      await sourceView(valid ? prettyJson(text) : text, 'json'));
  }
  if (kind === 'html') {
    if (!complete || !looksLikeMarkup(text)) {
      return replace(container, part, note('Shown as source only: not rendered.'), await sourceView(text, 'xml'));
    }
    const { bar, area, show } = toggle(['Rendered (sandboxed, no scripts)', 'Source'], [
      () => sandboxedFrame(text, artifact.name), () => sourceView(text, 'xml')]);
    replace(container, bar, area);
    return show();
  }
  if (kind === 'svg') {
    if (!complete || !/<svg[\s>]/i.test(text)) {
      return replace(container, part, note('Shown as source only: these bytes are not an SVG image.'), await sourceView(text, 'xml'));
    }
    const { bar, area, show } = toggle(['Image', 'Source'], [() => svgImage(text, artifact.name), () => sourceView(text, 'xml')]);
    replace(container, bar, area);
    return show();
  }
  if (kind === 'xml') return replace(container, part, await sourceView(text, 'xml'));
  return replace(container, part, await sourceView(text, language));
}

// An SVG as an <img> (where SVG runs no script and loads nothing), from a blob.
function svgImage(text, name) {
  const url = URL.createObjectURL(new Blob([text], { type: 'image/svg+xml' }));
  const img = h('img', { class: 'full svg', src: url, alt: name });
  img.addEventListener('load', () => URL.revokeObjectURL(url), { once: true });
  img.addEventListener('error', () => URL.revokeObjectURL(url), { once: true });
  return h('div', { class: 'image-frame' }, img);
}

// Media whose bytes did not agree with their type: the gateway serves them as an
// attachment; the page shows their text as source, if they are text at all.
async function mismatch(container, project, artifact, signal) {
  const message = `The gateway serves this file as a download only: its bytes are not the ${artifact.mime} its type declares.`;
  const { bytes, complete } = await firstBytes(project, artifact.id, artifact.size, TEXT_LIMIT, signal);
  const text = decodeText(bytes, complete);
  if (text === null) return replace(container, note(message));
  return replace(container, note(message, ' Its text, as source:'), complete ? null : partNote(artifact, bytes.length),
    await sourceView(text, looksLikeMarkup(text) ? 'xml' : 'plaintext'));
}
