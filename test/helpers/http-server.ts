/**
 * A static file server for tests and the bench: node:http on 127.0.0.1, a random port, GET and
 * HEAD, single byte ranges (206 + Content-Range), 404 for anything missing. Files are read per
 * request, so a test may add files under the root while the server runs. With `requireHeaders`
 * it answers 401 to any request that lacks one of them (a signed or authenticated source).
 *
 * Faults and slowness, for the remote-read tests and the bench: `inject` makes the next N ranged
 * GETs fail (a status with optional Retry-After, a reset before any answer, a body cut halfway,
 * a stall), `ignoreRange` answers every GET with the whole file (200, as a server without range
 * support does), and `latencyMs` / `bytesPerSecond` delay each response and pace its body.
 */
import { open, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export type Fault =
  | { kind: 'status'; status: number; retryAfter?: string }
  /** The connection is destroyed before any byte of the answer. */
  | { kind: 'reset' }
  /** Headers and half the body, then the connection is destroyed. */
  | { kind: 'cut' }
  /** No answer for `ms`, then a normal one. */
  | { kind: 'stall'; ms: number };

export interface StaticServerOptions {
  /** Wait before answering each request, ms. Default 0. */
  latencyMs?: number;
  /** Pace of each response body, bytes per second. Default unlimited. */
  bytesPerSecond?: number;
  /** Header name (any case) -> value every request must carry. */
  requireHeaders?: Record<string, string>;
}

export interface StaticServer {
  /** Base URL without a trailing slash, e.g. http://127.0.0.1:41234 */
  url: string;
  /** Requests seen so far, as "METHOD /path [range]". */
  requests: string[];
  /** Requests answered 401 for a missing or wrong required header, as "METHOD /path". */
  refused: string[];
  /** Faults answered so far. */
  faultsServed: number;
  /** Answer every GET with the whole file and status 200, ignoring Range. */
  ignoreRange: boolean;
  /**
   * The next `times` ranged GETs get `fault`: those whose path contains `match`, or for which
   * `match(path, range)` is true, when given.
   */
  inject(fault: Fault, times: number, match?: string | ((path: string, range: string) => boolean)): void;
  /** Forgets the faults not yet answered. */
  clearFaults(): void;
  close(): Promise<void>;
}

export async function startStaticServer(rootDir: string, options: StaticServerOptions = {}): Promise<StaticServer> {
  const root = path.resolve(rootDir);
  const planned: { fault: Fault; left: number; match?: string | ((path: string, range: string) => boolean) }[] = [];
  const state: StaticServer = {
    url: '',
    requests: [],
    refused: [],
    faultsServed: 0,
    ignoreRange: false,
    inject: (fault, times, match) => void planned.push({ fault, left: times, match }),
    clearFaults: () => void planned.splice(0),
    close: async () => {},
  };
  const takeFault = (req: IncomingMessage): Fault | null => {
    if (req.method !== 'GET' || !req.headers.range) return null;
    const url = req.url ?? '';
    const range = req.headers.range;
    const p = planned.find((f) => f.left > 0 && (!f.match || (typeof f.match === 'string' ? url.includes(f.match) : f.match(url, range))));
    if (!p) return null;
    p.left--;
    state.faultsServed++;
    return p.fault;
  };
  const required = Object.entries(options.requireHeaders ?? {}).map(([k, v]) => [k.toLowerCase(), v] as const);
  const server = createServer((req, res) => {
    state.requests.push(`${req.method} ${req.url}${req.headers.range ? ` ${req.headers.range}` : ''}`);
    if (required.some(([k, v]) => req.headers[k] !== v)) {
      state.refused.push(`${req.method} ${req.url}`);
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer' }).end('unauthorized');
      return;
    }
    const fault = takeFault(req);
    const go = (): void => {
      serve(root, req, res, fault, state.ignoreRange, options.bytesPerSecond).catch((err: Error) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(String(err.message));
      });
    };
    const wait = (options.latencyMs ?? 0) + (fault?.kind === 'stall' ? fault.ms : 0);
    if (wait > 0) setTimeout(go, wait);
    else go();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  state.url = `http://127.0.0.1:${port}`;
  state.close = () =>
    new Promise<void>((resolve, reject) => {
      server.closeAllConnections();
      server.close((err) => (err ? reject(err) : resolve()));
    });
  return state;
}

async function serve(root: string, req: IncomingMessage, res: ServerResponse, fault: Fault | null, ignoreRange: boolean, bytesPerSecond?: number): Promise<void> {
  if (fault?.kind === 'reset') {
    req.socket.destroy();
    return;
  }
  if (fault?.kind === 'status') {
    res.writeHead(fault.status, { 'content-type': 'text/plain', ...(fault.retryAfter ? { 'retry-after': fault.retryAfter } : {}) }).end('injected fault');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' }).end();
    return;
  }
  const rel = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
  const file = path.resolve(root, `.${rel}`);
  const st = file.startsWith(root) ? await stat(file).catch(() => null) : null;
  if (!st || !st.isFile()) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    return;
  }
  const type = file.endsWith('.json') ? 'application/json' : file.endsWith('.tif') ? 'image/tiff' : 'application/octet-stream';
  const headers: Record<string, string | number> = { 'content-type': type };
  if (!ignoreRange) headers['accept-ranges'] = 'bytes';
  const range = ignoreRange ? null : parseRange(req.headers.range, st.size);
  if (range === 'invalid') {
    res.writeHead(416, { ...headers, 'content-range': `bytes */${st.size}` }).end();
    return;
  }
  const [start, end] = range ?? [0, st.size - 1];
  headers['content-length'] = end - start + 1;
  if (range) headers['content-range'] = `bytes ${start}-${end}/${st.size}`;
  res.writeHead(range ? 206 : 200, headers);
  if (req.method === 'HEAD' || st.size === 0) {
    res.end();
    return;
  }
  const cut = fault?.kind === 'cut' ? { after: Math.floor((end - start + 1) / 2), cut: () => req.socket.destroy() } : undefined;
  return sendRange(file, start, end, res, bytesPerSecond, cut);
}

const CHUNK = 256 * 1024;
/**
 * Read buffers, reused once the socket has taken their bytes: the bench's remote row serves a
 * whole scene through this server on the same two cores as the run it measures, and a stream
 * allocating a fresh buffer per read cost it about half a CPU-second of garbage collection a
 * full tile (measured 2026-12-08), CPU that object storage spends on machines of its own.
 */
const freeChunks: Buffer[] = [];

/**
 * Bytes start..end (inclusive) of `file` into `res`, at `bps` bytes per second when given: each
 * chunk leaves when the bytes before it are due (from the first chunk on), so a timer that fires
 * late, as timers do on a busy machine and always by their millisecond granularity, is made up by
 * the next chunk instead of adding up (a plain sleep of length/bps per 64 KiB chunk gave 60 MB/s
 * at most for a 100 MB/s setting). With `cut`, only its first `after` bytes are sent, then the
 * connection is cut.
 */
async function sendRange(file: string, start: number, end: number, res: ServerResponse, bps?: number, cut?: { after: number; cut: () => void }): Promise<void> {
  const last = cut ? Math.min(end, start + cut.after - 1) : end;
  const fh = await open(file, 'r');
  try {
    let first = 0;
    let sent = 0;
    for (let at = start; at <= last && !res.destroyed; ) {
      const buf = freeChunks.pop() ?? Buffer.allocUnsafeSlow(CHUNK);
      const { bytesRead } = await fh.read(buf, 0, Math.min(CHUNK, last + 1 - at), at);
      if (bytesRead === 0) {
        freeChunks.push(buf);
        break;
      }
      if (bps) {
        const now = performance.now();
        if (sent === 0) first = now;
        const due = first + (sent / bps) * 1000;
        if (due > now) await new Promise((r) => setTimeout(r, due - now));
      }
      sent += bytesRead;
      at += bytesRead;
      const flowing = res.write(buf.subarray(0, bytesRead), () => void (freeChunks.length < 64 && freeChunks.push(buf)));
      if (!flowing) await drained(res);
    }
    if (cut) setTimeout(cut.cut, 10);
    else res.end();
  } finally {
    await fh.close();
  }
}

/** Resolves when `res` wants more bytes, or is gone. */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** A single "bytes=a-b", "bytes=a-" or "bytes=-n" range; null without a Range header. */
function parseRange(header: string | undefined, size: number): [number, number] | null | 'invalid' {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return 'invalid';
  let start: number;
  let end: number;
  if (m[1] === '') {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(size - 1, Number(m[2]));
  }
  return start > end || start >= size ? 'invalid' : [start, end];
}
