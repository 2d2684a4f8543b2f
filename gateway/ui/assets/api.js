// The public HTTP API (docs/api.md), with the principal token of this tab.
//
// The token lives in sessionStorage only: never a cookie (requests go with
// credentials: 'omit'), never in a URL the server sees. Its payload is decoded,
// unverified, only to show who is signed in and which buttons make sense; the
// gateway verifies it on every request.

const TOKEN_KEY = 'mobius-artifacts.token';

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token.trim());
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

export function claimsOf(token) {
  try {
    const part = String(token).split('.')[1];
    const base64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const binary = atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, '='));
    const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))));
    return claims && typeof claims === 'object' && !Array.isArray(claims) ? claims : null;
  } catch {
    return null;
  }
}

export function scopesOf(claims) {
  return typeof claims?.scope === 'string' ? claims.scope.split(' ').filter(Boolean) : [];
}

export function expired(claims, now = Date.now()) {
  return typeof claims?.exp === 'number' && claims.exp * 1000 <= now;
}

// May this token delete this artifact? (The gateway decides; this only hides a
// button that would be refused: artifacts:admin, or artifacts:delete on one's own.)
export function canDelete(claims, artifact) {
  const scopes = scopesOf(claims);
  if (scopes.includes('artifacts:admin')) return true;
  return (
    scopes.includes('artifacts:delete') &&
    artifact.owner?.kind !== 'run' &&
    artifact.owner?.id === claims?.sub
  );
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `the gateway answered ${status}`);
    this.status = status;
    this.code = problem?.code || '';
    this.problem = problem;
  }
}

async function problemOf(resp) {
  try {
    if ((resp.headers.get('Content-Type') || '').includes('json')) return await resp.json();
  } catch {
    // not a problem document
  }
  return null;
}

export async function request(path, { method = 'GET', headers = {}, body, signal } = {}) {
  const sent = new Headers(headers);
  const token = getToken();
  if (token) sent.set('Authorization', `Bearer ${token}`);
  const resp = await fetch(path, {
    method,
    headers: sent,
    body,
    signal,
    cache: 'no-store',
    credentials: 'omit',
    referrerPolicy: 'no-referrer',
  });
  if (!resp.ok) throw new ApiError(resp.status, method === 'HEAD' ? null : await problemOf(resp));
  return resp;
}

async function json(path, options) {
  return (await request(path, options)).json();
}

const projectPath = (project) => `/v1/projects/${encodeURIComponent(project)}`;
const artifactPath = (project, id) => `${projectPath(project)}/artifacts/${encodeURIComponent(id)}`;

export function contentPath(project, id) {
  return `${artifactPath(project, id)}/content`;
}

export function listArtifacts(project, params, signal) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') query.set(key, String(value));
  }
  return json(`${projectPath(project)}/artifacts?${query}`, { signal });
}

export function getQuota(project, signal) {
  return json(`${projectPath(project)}/artifacts/quota`, { signal });
}

export function getArtifact(project, id, signal) {
  return json(artifactPath(project, id), { signal });
}

export async function headContent(project, id, signal) {
  const resp = await request(contentPath(project, id), { method: 'HEAD', signal });
  return {
    type: (resp.headers.get('Content-Type') || '').split(';')[0].trim().toLowerCase(),
    disposition: (resp.headers.get('Content-Disposition') || '').split(';')[0].trim(),
  };
}

// The first `limit` bytes of an artifact (a Range request): {bytes, complete, type}.
export async function firstBytes(project, id, size, limit, signal) {
  if (size === 0) return { bytes: new Uint8Array(0), complete: true, type: '' };
  const headers = size > limit ? { Range: `bytes=0-${limit - 1}` } : {};
  const resp = await request(contentPath(project, id), { headers, signal });
  const bytes = new Uint8Array(await resp.arrayBuffer());
  const type = (resp.headers.get('Content-Type') || '').split(';')[0].trim().toLowerCase();
  return { bytes, complete: bytes.length >= size, type };
}

export async function contentBlob(project, id, signal) {
  const resp = await request(contentPath(project, id), { signal });
  const type = (resp.headers.get('Content-Type') || '').split(';')[0].trim().toLowerCase();
  return { blob: await resp.blob(), type, disposition: (resp.headers.get('Content-Disposition') || '').split(';')[0] };
}

// A signed URL (absolute), valid for `seconds`: {url, expires_at}.
export async function signedUrl(project, id, seconds, signal) {
  const minted = await json(`${artifactPath(project, id)}/signed-url`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ expires_in: seconds }),
    signal,
  });
  return { url: new URL(minted.url, location.origin).href, expires_at: minted.expires_at };
}

export async function deleteArtifact(project, id) {
  await request(artifactPath(project, id), { method: 'DELETE' });
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });

// The project's event feed, live. EventSource cannot send an Authorization
// header, so the stream is read with fetch and parsed here (server-sent events:
// `id:`, `event:`, `data:` lines, a blank line ends an event, `:` a comment).
// It starts after the newest event the token can see, and reconnects with
// Last-Event-ID after a failure. A stream the gateway ends says why in a last
// `event: error` frame (a problem document): `token_expired` stops the feed with
// a 401 ApiError (the page asks to sign in again); any other reason reconnects.
// Listeners get {kind: 'event', event} and
// {kind: 'state', state: 'connecting' | 'live' | 'reconnecting' | 'stopped', error}.
export class EventFeed {
  constructor(project) {
    this.project = project;
    this.listeners = new Set();
    this.controller = new AbortController();
    this.lastSeq = null;
    this.ended = null; // the problem of the last `event: error` frame
    this.state = 'connecting';
    this.run();
  }

  subscribe(listener) {
    this.listeners.add(listener);
    listener({ kind: 'state', state: this.state });
    return () => this.listeners.delete(listener);
  }

  stop() {
    this.controller.abort();
    this.setState('stopped');
  }

  emit(message) {
    for (const listener of [...this.listeners]) listener(message);
  }

  setState(state, error) {
    this.state = state;
    this.emit({ kind: 'state', state, error });
  }

  // The seq of the next visible event after `after`, or null.
  async next(after) {
    const path = `${projectPath(this.project)}/events?after=${after}&limit=1`;
    const page = await json(path, { signal: this.controller.signal });
    return page.items.length ? page.items[0].seq : null;
  }

  // The newest seq this token can see (0 for none). The feed has no "latest"
  // cursor, so it is found with a few one-item pages: doubling steps, then halving.
  async head() {
    let low = await this.next(0);
    if (low === null) return 0;
    let high = null;
    for (let step = 1; high === null; step *= 2) {
      const found = await this.next(low + step);
      if (found === null) high = low + step;
      else low = found;
    }
    while (low < high) {
      const middle = Math.floor((low + high) / 2);
      const found = await this.next(middle);
      if (found === null) high = middle;
      else low = found;
    }
    return low;
  }

  async run() {
    const signal = this.controller.signal;
    let delay = 1000;
    while (!signal.aborted) {
      try {
        if (this.lastSeq === null) this.lastSeq = await this.head();
        const headers = { Accept: 'text/event-stream', 'Last-Event-ID': String(this.lastSeq) };
        const resp = await request(`${projectPath(this.project)}/events`, { headers, signal });
        this.setState('live');
        delay = 1000;
        this.ended = null;
        await this.read(resp.body);
        if (this.ended?.code === 'token_expired') {
          this.setState('stopped', new ApiError(401, this.ended));
          return;
        }
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof ApiError && error.status < 500 && error.status !== 429) {
          this.setState('stopped', error);
          return;
        }
      }
      if (signal.aborted) return;
      this.setState('reconnecting');
      await sleep(delay, signal);
      delay = Math.min(delay * 2, 15000);
    }
  }

  async read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let fields = { id: null, event: 'message', data: [] };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, end).replace(/\r$/, '');
        buffer = buffer.slice(end + 1);
        if (line === '') {
          if (fields.data.length) this.dispatch(fields);
          fields = { id: null, event: 'message', data: [] };
        } else if (!line.startsWith(':')) {
          const colon = line.indexOf(':');
          const name = colon < 0 ? line : line.slice(0, colon);
          const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (name === 'data') fields.data.push(text);
          else if (name === 'id') fields.id = text;
          else if (name === 'event') fields.event = text;
        }
      }
    }
  }

  dispatch(fields) {
    let event;
    try {
      event = JSON.parse(fields.data.join('\n'));
    } catch {
      return;
    }
    if (fields.event === 'error') {
      this.ended = event && typeof event === 'object' ? event : {};
      return;
    }
    if (fields.event !== 'message' && !fields.event.startsWith('artifact.')) return;
    const seq = Number(fields.id ?? event.seq);
    if (Number.isSafeInteger(seq)) this.lastSeq = Math.max(this.lastSeq ?? 0, seq);
    this.emit({ kind: 'event', event });
  }
}
