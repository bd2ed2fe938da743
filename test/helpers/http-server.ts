/**
 * A static file server for tests: node:http on 127.0.0.1, a random port, GET and HEAD, single
 * byte ranges (206 + Content-Range), 404 for anything missing. Files are read per request, so
 * a test may add files under the root while the server runs. With `requireHeaders` it answers
 * 401 to any request that lacks one of them (a signed or authenticated source).
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export interface StaticServer {
  /** Base URL without a trailing slash, e.g. http://127.0.0.1:41234 */
  url: string;
  /** Requests seen so far, as "METHOD /path [range]". */
  requests: string[];
  /** Requests answered 401 for a missing or wrong required header, as "METHOD /path". */
  refused: string[];
  close(): Promise<void>;
}

export interface StaticServerOptions {
  /** Header name (any case) -> value every request must carry. */
  requireHeaders?: Record<string, string>;
}

export async function startStaticServer(rootDir: string, options: StaticServerOptions = {}): Promise<StaticServer> {
  const root = path.resolve(rootDir);
  const requests: string[] = [];
  const refused: string[] = [];
  const required = Object.entries(options.requireHeaders ?? {}).map(([k, v]) => [k.toLowerCase(), v] as const);
  const server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}${req.headers.range ? ` ${req.headers.range}` : ''}`);
    if (required.some(([k, v]) => req.headers[k] !== v)) {
      refused.push(`${req.method} ${req.url}`);
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer' }).end('unauthorized');
      return;
    }
    serve(root, req, res).catch((err: Error) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(err.message));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    refused,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}

async function serve(root: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
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
  const headers: Record<string, string | number> = { 'accept-ranges': 'bytes', 'content-type': type };
  const range = parseRange(req.headers.range, st.size);
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
  createReadStream(file, { start, end }).pipe(res);
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
