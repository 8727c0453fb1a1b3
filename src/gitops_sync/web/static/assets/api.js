// The registry API as the page uses it. Paths are relative to the page, so the view also works
// behind a reverse proxy that serves it under a path prefix.

const TIMEOUT_MS = 15000;
const PAGE_SIZE = 1000; // the API's maximum page size: 10 requests for 10,000 capabilities

/** An answer the API refused, with the problem+json `title` and `detail` when it sent them. */
export class ApiError extends Error {
  constructor(url, status, problem) {
    const what = problem?.detail || problem?.title || `HTTP ${status}`;
    super(`${url}: ${what}`);
    this.url = url;
    this.status = status;
    this.problem = problem;
  }
}

/** GET a JSON document; rejects with ApiError on a non-2xx answer, or on a timeout. */
export async function getJSON(path, { signal } = {}) {
  const timeout = AbortSignal.timeout(TIMEOUT_MS);
  const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
  let response;
  try {
    response = await fetch(path, { signal: combined, headers: { Accept: "application/json" } });
  } catch (error) {
    if (timeout.aborted) throw new ApiError(path, 0, { detail: `no answer within ${TIMEOUT_MS / 1000} s` });
    throw error;
  }
  if (!response.ok) {
    let problem = null;
    try {
      problem = await response.json();
    } catch {
      problem = null;
    }
    throw new ApiError(path, response.status, problem);
  }
  return response.json();
}

export function capabilityPath(id) {
  return `v1/capabilities/${encodeURIComponent(id)}`;
}

/**
 * Every capability, page by page (sorted by id). `onPage(items)` sees each page as it arrives so the
 * table can fill while the rest loads. Resolves to {items, revision}: the lowest revision of the
 * pages, so that every change event after it is applied.
 */
export async function listAll({ signal, onPage } = {}) {
  const items = [];
  let revision = Number.POSITIVE_INFINITY;
  let cursor = null;
  for (let page = 0; page < 100000; page += 1) {
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (cursor) query.set("cursor", cursor);
    const answer = await getJSON(`v1/capabilities?${query}`, { signal });
    items.push(...answer.items);
    revision = Math.min(revision, answer.revision);
    onPage?.(answer.items);
    if (!answer.next_cursor || answer.next_cursor === cursor) break;
    cursor = answer.next_cursor;
  }
  return { items, revision: Number.isFinite(revision) ? revision : 0 };
}

/**
 * Follow /v1/events. EventSource reconnects by itself and sends Last-Event-ID, so the server resumes
 * where the page left off; `onState(state, {reconnected})` hears "live", "reconnecting" or "closed".
 */
export function followEvents({ onChange, onSnapshot, onState }) {
  const source = new EventSource("v1/events");
  let opened = 0;
  source.addEventListener("open", () => {
    opened += 1;
    onState("live", { reconnected: opened > 1 });
  });
  source.addEventListener("error", () => onState(source.readyState === EventSource.CLOSED ? "closed" : "reconnecting"));
  source.addEventListener("change", (event) => {
    const data = parse(event.data);
    if (data) onChange(data, event.lastEventId);
  });
  source.addEventListener("snapshot", (event) => onSnapshot(parse(event.data) ?? {}, event.lastEventId));
  return source;
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    console.warn("gitops-sync: ignored an event that is not JSON", text);
    return null;
  }
}
