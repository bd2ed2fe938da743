/**
 * Reading byte ranges of a remote file: every request of a GeoTIFF read (the opening probe of
 * its first block, header, tiles) is built by {@link httpRequest} (one place for headers, timeouts, retries and counting). Failures are
 * classified by what a retry can change: resets, a connection closed mid-response, timeouts, 5xx,
 * 408 and 429 are retried here with exponential backoff (honouring Retry-After), then reported
 * as TRANSIENT_IO, so the transport may try the job again later; 404/403/401 are
 * INPUT_NOT_FOUND and other 4xx BAD_INPUT, at once. A server that answers a range request with
 * the whole file (200) is refused at once (BAD_INPUT): see {@link rangeRefused}.
 *
 * {@link HttpRangeSource} is the byte source geotiff.js reads a remote TIFF through: the ranges
 * asked for in one turn of the event loop (a window's tiles) are sorted and merged when they lie
 * within `mergeGapBytes` of each other, and the merged requests run at most `concurrency` at a
 * time per origin. Small reads (the header, the IFD, tag arrays) come from a few cached 64 KiB
 * blocks, so opening a file costs one or two requests, not one per tag.
 */
import http from 'node:http';
import https from 'node:https';
import { Worker } from 'node:worker_threads';
import { CloudMaskError, fromErrorData, type ErrorData } from '../shared/errors.ts';

/** How GeoTIFF reads over http retry and merge (the headers they carry are http.ts's HttpOptions). */
export interface HttpReadOptions {
  /** Attempts per request before it fails with TRANSIENT_IO. Default 5. */
  attempts?: number;
  /** Backoff before the first retry, ms; doubles each time up to `maxBackoffMs`. Default 250. */
  backoffMs?: number;
  /** Longest backoff between attempts, ms. Default 8000. */
  maxBackoffMs?: number;
  /** Longest Retry-After (429, 503) that is waited for, ms; longer ones are cut to this. Default 30000. */
  maxRetryAfterMs?: number;
  /** One attempt's limit, headers and body together, ms. Default 30000. */
  timeoutMs?: number;
  /** Merged range requests in flight per origin (per thread). Default 8. */
  concurrency?: number;
  /** Ranges at most this far apart are fetched as one request (the gap is read and dropped), bytes. Default 64 KiB. */
  mergeGapBytes?: number;
  /** Largest merged request, bytes (a single larger range is still one request). Default 16 MiB. */
  maxRequestBytes?: number;
}

export const HTTP_READ_DEFAULTS: Required<HttpReadOptions> = {
  attempts: 5,
  backoffMs: 250,
  maxBackoffMs: 8000,
  maxRetryAfterMs: 30_000,
  timeoutMs: 30_000,
  concurrency: 8,
  mergeGapBytes: 64 * 1024,
  maxRequestBytes: 16 * 2 ** 20,
};

/** Validates options (naming the bad field) and fills in the defaults. */
export function resolveHttpReadOptions(options: HttpReadOptions = {}): Required<HttpReadOptions> {
  const r = { ...HTTP_READ_DEFAULTS, ...options };
  for (const key of ['attempts', 'concurrency', 'timeoutMs', 'maxRequestBytes'] as const) {
    if (!Number.isInteger(r[key]) || r[key] < 1) throw new RangeError(`options.${key} must be a positive integer, got ${r[key]}`);
  }
  for (const key of ['backoffMs', 'maxBackoffMs', 'maxRetryAfterMs', 'mergeGapBytes'] as const) {
    if (!Number.isInteger(r[key]) || r[key] < 0) throw new RangeError(`options.${key} must be a non-negative integer, got ${r[key]}`);
  }
  return r;
}

let current = resolveHttpReadOptions();

/**
 * Sets how every GeoTIFF read over http of this thread retries and merges (tests; a chip thread
 * from its start data). Returns the resolved options.
 */
export function setHttpReadOptions(options: HttpReadOptions): Required<HttpReadOptions> {
  return (current = resolveHttpReadOptions(options));
}

export function currentHttpReadOptions(): Required<HttpReadOptions> {
  return current;
}

/** Outcome of one attempt: ok, retry (failed, tried again), error (failed, given up). */
export type HttpOutcome = 'ok' | 'retry' | 'error';

/** What this thread's requests did since it started (the worker turns deltas into metrics). */
export interface HttpStats {
  requests: Record<HttpOutcome, number>;
  /** Bytes of response bodies received. */
  bytes: number;
}

const stats: HttpStats = { requests: { ok: 0, retry: 0, error: 0 }, bytes: 0 };
/** The I/O thread's counters, as its latest answer gave them (see {@link useIoThread}). */
let ioStats: HttpStats = { requests: { ok: 0, retry: 0, error: 0 }, bytes: 0 };

/** A copy of this thread's counters (its I/O thread's included). */
export function httpStats(): HttpStats {
  const r = stats.requests;
  const io = ioStats.requests;
  return { requests: { ok: r.ok + io.ok, retry: r.retry + io.retry, error: r.error + io.error }, bytes: stats.bytes + ioStats.bytes };
}

export interface RangeRequest {
  url: string;
  /** What the file is, for messages ("band B04"). */
  label: string;
  /** Sent with the request (--http-header); never part of a message. */
  headers?: Readonly<Record<string, string>>;
  /** Inclusive byte range; none = the whole resource. */
  range?: { start: number; end: number };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A failure worth another attempt, with the server's Retry-After when it gave one. */
class Retryable extends Error {
  constructor(
    message: string,
    readonly retryAfterMs: number | null = null,
  ) {
    super(message);
  }
}

/**
 * One request, retried on transient failures. Resolves with the response (status checked) and
 * its body; rejects with a CloudMaskError.
 */
export async function httpRequest(req: RangeRequest, options: Required<HttpReadOptions>): Promise<{ res: HttpAnswer; body: Uint8Array }> {
  const what = `${req.label} ${req.url}`;
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await attemptOnce(req, options, what);
      stats.requests.ok++;
      return r;
    } catch (err) {
      if (!(err instanceof Retryable) || attempt >= options.attempts) {
        stats.requests.error++;
        if (err instanceof CloudMaskError) throw err;
        const tries = attempt === 1 ? '' : ` (${attempt} attempts)`;
        throw new CloudMaskError('TRANSIENT_IO', `${what}: ${(err as Error).message}${tries}`, { cause: err });
      }
      stats.requests.retry++;
      await sleep(retryDelay(attempt, err.retryAfterMs, options));
    }
  }
}

/** Exponential backoff with jitter (so threads that failed together do not retry together); Retry-After wins. */
export function retryDelay(attempt: number, retryAfterMs: number | null, o: Pick<Required<HttpReadOptions>, 'backoffMs' | 'maxBackoffMs' | 'maxRetryAfterMs'>): number {
  if (retryAfterMs !== null) return Math.min(retryAfterMs, o.maxRetryAfterMs);
  const d = Math.min(o.backoffMs * 2 ** (attempt - 1), o.maxBackoffMs);
  return d / 2 + Math.random() * (d / 2);
}

/** Retry-After as seconds or an HTTP date, in ms from now; null when absent or unreadable. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | null {
  if (!value) return null;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const t = Date.parse(value);
  return Number.isFinite(t) ? Math.max(0, t - now) : null;
}

/** A response's status, headers (lower-case names) and body. */
export interface HttpAnswer {
  status: number;
  header(name: string): string | null;
}

/**
 * One GET with node:http(s), its body read into one buffer sized by Content-Length (fetch's
 * streams cost about a third of a chip thread's CPU on a remote scene: chunk objects, promise
 * turns and a concatenating copy per response, measured 2026-12-02). Network failures, the time
 * limit and a body cut short reject with a Retryable.
 */
function getOnce(url: string, headers: Record<string, string>, timeoutMs: number, maxExpected: number): Promise<{ answer: HttpAnswer; body: Uint8Array }> {
  return new Promise((resolve, reject) => {
    const client = url.startsWith('https:') ? https : http;
    let settled = false;
    const fail = (why: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      reject(new Retryable(why));
    };
    const timer = setTimeout(() => fail(`no complete answer within ${timeoutMs} ms`), timeoutMs);
    const req = client.get(url, { headers }, (res) => {
      const answer: HttpAnswer = {
        status: res.statusCode ?? 0,
        header: (name) => {
          const v = res.headers[name.toLowerCase()];
          return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
        },
      };
      const length = Number(res.headers['content-length']);
      const ok = answer.status >= 200 && answer.status < 300;
      // Error answers are not read: the connection is dropped with them.
      if (!ok) {
        settled = true;
        clearTimeout(timer);
        res.destroy();
        resolve({ answer, body: new Uint8Array(0) });
        return;
      }
      // Sized by Content-Length, but never beyond what was asked for: a bigger body grows the buffer as it comes.
      let body = new Uint8Array(Number.isSafeInteger(length) && length >= 0 ? Math.min(length, maxExpected) : Math.min(64 * 1024, maxExpected));
      let at = 0;
      res.on('data', (chunk: Buffer) => {
        if (at + chunk.length > body.length) {
          // No (or a wrong) Content-Length: grow.
          const grown = new Uint8Array(Math.max(2 * body.length, at + chunk.length));
          grown.set(body.subarray(0, at));
          body = grown;
        }
        body.set(chunk, at);
        at += chunk.length;
      });
      res.on('end', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        // A body shorter than its Content-Length is a cut connection (checked by the caller).
        resolve({ answer, body: at === body.length ? body : body.subarray(0, at) });
      });
      res.on('error', (err) => fail(`response cut short (${networkFailure(err)})`));
      res.on('close', () => {
        if (!res.complete) fail('response cut short (connection closed)');
      });
    });
    req.on('error', (err) => fail(networkFailure(err)));
  });
}

async function attemptOnce(req: RangeRequest, o: Required<HttpReadOptions>, what: string): Promise<{ res: HttpAnswer; body: Uint8Array }> {
  const headers: Record<string, string> = { ...req.headers };
  if (req.range) headers.range = `bytes=${req.range.start}-${req.range.end}`;
  const { answer: res, body } = await getOnce(req.url, headers, o.timeoutMs, req.range ? req.range.end - req.range.start + 1 : o.maxRequestBytes);
  const status = res.status;
  if (status === 429 || status === 408 || status >= 500) {
    throw new Retryable(`server answered HTTP ${status}`, parseRetryAfter(res.header('retry-after')));
  }
  if (status < 200 || status >= 300) throw statusError(status, what);
  if (req.range && status !== 206) throw rangeRefused(what, status);
  stats.bytes += body.byteLength;
  const length = Number(res.header('content-length') ?? NaN);
  if (Number.isFinite(length) && body.byteLength < length) throw new Retryable(`response cut short: ${body.byteLength} of ${length} bytes`);
  if (req.range) {
    const want = req.range.end - req.range.start + 1;
    const contentRange = res.header('content-range');
    // Without Content-Range only a body of exactly the asked length can be placed.
    if (contentRange === null && body.byteLength !== want) throw new Retryable(`206 without Content-Range and ${body.byteLength} of ${want} bytes`);
    const start = contentRange === null ? req.range.start : Number(/bytes\s+(\d+)-/.exec(contentRange)?.[1] ?? NaN);
    if (start !== req.range.start) throw new Retryable(`server answered bytes ${contentRange} for a request from ${req.range.start}`);
    // A range past the end is answered up to the end; a shorter body is a cut connection.
    const total = contentRangeTotal(contentRange);
    const expected = Number.isFinite(total) ? Math.min(want, total - req.range.start) : want;
    if (body.byteLength < expected) throw new Retryable(`response cut short: ${body.byteLength} of ${expected} bytes`);
  }
  return { res, body };
}

/** A request posted to the I/O thread. */
export interface IoThreadRequest {
  id: number;
  req: RangeRequest;
  options: Required<HttpReadOptions>;
}

/** Its answer: the body, or the error as data; with the I/O thread's counters so far. */
export type IoThreadAnswer = ({ id: number; body: Uint8Array } | { id: number; error: ErrorData }) & { stats: HttpStats };

/**
 * A chip thread spends most of its time inside onnxruntime's run, which blocks its event loop:
 * the answers to the next job's requests would sit in the socket, unread, the server's sending
 * stalled behind a full socket buffer, until a chip ended. With {@link useIoThread}, this
 * thread's range reads ({@link fetchRange}) are carried by a thread of their own that does
 * nothing else, so a response is read while the models run, and the chip thread gets it whole.
 */
interface IoThread {
  worker: Worker;
  /** The requests it carries, by id. */
  waiting: Map<number, { resolve(body: Uint8Array): void; reject(err: unknown): void }>;
  next: number;
}
let ioThread: IoThread | null = null;
let ioThreadWanted = false;

/** Range reads of this thread go through an I/O thread of its own from now on (started at the first read). */
export function useIoThread(): void {
  ioThreadWanted = true;
}

function startIoThread(): IoThread {
  const worker = new Worker(new URL('./http-io-thread-entry.mjs', import.meta.url));
  const t: IoThread = { worker, waiting: new Map(), next: 1 };
  worker.unref();
  worker.on('message', (a: IoThreadAnswer) => {
    ioStats = a.stats;
    const w = t.waiting.get(a.id);
    t.waiting.delete(a.id);
    if (t.waiting.size === 0) worker.unref();
    if (!w) return;
    if ('error' in a) w.reject(fromErrorData(a.error));
    else w.resolve(a.body);
  });
  // The thread failing to start or dying fails what it carried; the next read starts a new one.
  const fail = (why: string): void => {
    if (ioThread === t) ioThread = null;
    for (const w of t.waiting.values()) w.reject(new CloudMaskError('TRANSIENT_IO', `http I/O thread ${why}`));
    t.waiting.clear();
  };
  worker.on('error', (err) => fail(`failed: ${err.message}`));
  worker.on('exit', (code) => fail(`exited (code ${code})`));
  return t;
}

/**
 * Starts this thread's I/O thread now if its range reads go through one ({@link useIoThread}):
 * opening a remote file calls it, so that the thread's start (about 0.1 s: a Node thread and its
 * modules) passes during the opening's own request instead of delaying the first tile reads.
 */
export function startIoThreadEarly(): void {
  if (ioThreadWanted) ioThread ??= startIoThread();
}

/** Whether this thread's I/O thread is running (tests). */
export function ioThreadRunning(): boolean {
  return ioThread !== null;
}

/**
 * The body of one range request, with {@link httpRequest}'s retries and errors: run here, or by
 * this thread's I/O thread once {@link useIoThread} was called.
 */
export function fetchRange(req: RangeRequest, options: Required<HttpReadOptions>): Promise<Uint8Array> {
  if (!ioThreadWanted) return httpRequest(req, options).then((r) => r.body);
  const t = (ioThread ??= startIoThread());
  const id = t.next++;
  return new Promise<Uint8Array>((resolve, reject) => {
    t.waiting.set(id, { resolve, reject });
    if (t.waiting.size === 1) t.worker.ref();
    t.worker.postMessage({ id, req: { url: req.url, label: req.label, headers: req.headers, range: req.range }, options } satisfies IoThreadRequest);
  });
}

/**
 * Refusing a server that ignores Range: rather than a bounded full download, because a 10 m band
 * of a real tile is 150-250 MB, each chip thread of each worker would fetch it whole for every
 * scene (nothing shares the bytes between threads or machines), and any cap small enough to be
 * safe fails real tiles anyway, after the download. Saying so at once is clearer.
 */
export function rangeRefused(what: string, status: number): CloudMaskError {
  return new CloudMaskError('BAD_INPUT', `${what}: the server ignores Range requests (HTTP ${status} with the whole file instead of 206); serve it from a server with range support, or copy it locally`);
}

/** The CloudMaskError a non-retryable HTTP status stands for. */
export function statusError(status: number, what: string): CloudMaskError {
  // Signed or authenticated sources (Planetary Computer, private buckets) answer 401/403.
  if (status === 401 || status === 403) return new CloudMaskError('INPUT_NOT_FOUND', `${what} refused (HTTP ${status}): the server wants credentials or a signed URL (--http-header 'Name: value')`);
  if (status === 404 || status === 410) return new CloudMaskError('INPUT_NOT_FOUND', `${what} not found (HTTP ${status})`);
  if (status === 416) return new CloudMaskError('BAD_INPUT', `${what} is empty or shorter than the bytes asked for (HTTP 416)`);
  return new CloudMaskError('BAD_INPUT', `${what} cannot be fetched (HTTP ${status})`);
}

/** A node:http error in words, with its code where the message lacks it ("socket hang up (ECONNRESET)"). */
export function networkFailure(err: unknown): string {
  const e = err as { message?: string; code?: string };
  const message = String(e.message ?? err);
  return e.code && !message.includes(e.code) ? `${message} (${e.code})` : message;
}

/** The complete length from a Content-Range header ("bytes 0-65535/1234567"); NaN when absent or "*". */
export function contentRangeTotal(header: string | null): number {
  return Number(/\/(\d+)\s*$/.exec(header ?? '')?.[1] ?? NaN);
}
