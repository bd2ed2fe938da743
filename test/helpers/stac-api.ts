/**
 * A small STAC API for tests, speaking the protocol a client meets at Earth Search or Planetary
 * Computer: GET / (landing page), GET /collections/{c}/items/{id}, POST /search with
 * collections, bbox, datetime, limit and the query extension's eo:cloud_cover, answering
 * FeatureCollections whose `next` link is a POST with a token in its body (merge: true). Any
 * other path is served as a static file from `filesDir` (the items' assets), with byte ranges.
 */
import { readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export interface StacApiServer {
  url: string;
  /** Requests seen, as "METHOD /path" (POST bodies appended as JSON). */
  requests: string[];
  close(): Promise<void>;
}

type Item = { id: string; collection: string; bbox: number[]; properties: Record<string, unknown>; links?: unknown[]; [k: string]: unknown };

interface SearchBody {
  collections?: string[];
  bbox?: number[];
  datetime?: string;
  limit?: number;
  token?: string;
  query?: { 'eo:cloud_cover'?: { lte?: number; lt?: number } };
}

function matches(item: Item, q: SearchBody): boolean {
  if (q.collections && !q.collections.includes(item.collection)) return false;
  if (q.bbox) {
    const [w, s, e, n] = q.bbox;
    const [iw, is, ie, inn] = item.bbox;
    if (ie! < w! || iw! > e! || inn! < s! || is! > n!) return false;
  }
  if (q.datetime) {
    const t = Date.parse(String(item.properties.datetime));
    const [from, to] = q.datetime.split('/');
    if (from && from !== '..' && t < Date.parse(from)) return false;
    if (to && to !== '..' && t > Date.parse(to)) return false;
  }
  const cc = q.query?.['eo:cloud_cover'];
  const cover = item.properties['eo:cloud_cover'];
  if (cc && typeof cover === 'number') {
    if (cc.lte !== undefined && !(cover <= cc.lte)) return false;
    if (cc.lt !== undefined && !(cover < cc.lt)) return false;
  }
  return true;
}

/** `maxPageSize`: the server's cap on `limit`, as real APIs have (default 1000). */
export async function startStacApi(items: Item[], filesDir: string, opts: { maxPageSize?: number } = {}): Promise<StacApiServer> {
  const requests: string[] = [];
  let base = '';
  const withLinks = (item: Item): Item => ({
    ...item,
    links: [{ rel: 'self', href: `${base}/collections/${item.collection}/items/${item.id}`, type: 'application/geo+json' }],
  });
  const json = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': status < 300 ? 'application/geo+json' : 'application/json' }).end(JSON.stringify(body));
  };
  const search = (res: ServerResponse, q: SearchBody): void => {
    const hits = items.filter((i) => matches(i, q));
    const limit = Math.max(1, Math.min(q.limit ?? 10, opts.maxPageSize ?? 1000));
    const offset = q.token ? Number(q.token.replace(/^next:/, '')) : 0;
    const page = hits.slice(offset, offset + limit);
    const links: unknown[] = [{ rel: 'root', href: `${base}/` }];
    if (offset + limit < hits.length) links.push({ rel: 'next', href: `${base}/search`, method: 'POST', body: { token: `next:${offset + limit}` }, merge: true });
    json(res, 200, { type: 'FeatureCollection', features: page.map(withLinks), numberMatched: hits.length, numberReturned: page.length, links });
  };
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://x');
    let body = '';
    for await (const chunk of req) body += String(chunk);
    requests.push(`${req.method} ${url.pathname}${body ? ` ${body}` : ''}`);
    if (url.pathname === '/search') {
      if (req.method !== 'POST') return json(res, 405, { code: 'MethodNotAllowed' });
      let q: SearchBody;
      try {
        q = JSON.parse(body) as SearchBody;
      } catch {
        return json(res, 400, { code: 'BadRequest', description: 'body is not JSON' });
      }
      return search(res, q);
    }
    if (url.pathname === '/') return json(res, 200, { type: 'Catalog', id: 'test-api', stac_version: '1.0.0', conformsTo: ['https://api.stacspec.org/v1.0.0/item-search'], links: [{ rel: 'search', href: `${base}/search`, method: 'POST' }] });
    const m = /^\/collections\/([^/]+)\/items\/([^/]+)$/.exec(url.pathname);
    if (m) {
      const item = items.find((i) => i.collection === decodeURIComponent(m[1]!) && i.id === decodeURIComponent(m[2]!));
      return item ? json(res, 200, withLinks(item)) : json(res, 404, { code: 'NotFound' });
    }
    return serveFile(filesDir, url.pathname, req, res);
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      if (!res.headersSent) res.writeHead(500);
      res.end(err.message);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: base,
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}

async function serveFile(dir: string, rel: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const file = path.resolve(dir, `.${decodeURIComponent(rel)}`);
  const st = file.startsWith(path.resolve(dir)) ? await stat(file).catch(() => null) : null;
  if (!st?.isFile()) {
    res.writeHead(404).end('not found');
    return;
  }
  const data = await readFile(file);
  const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
  if (!m) {
    res.writeHead(200, { 'content-length': data.length, 'accept-ranges': 'bytes' }).end(req.method === 'HEAD' ? undefined : data);
    return;
  }
  const start = Number(m[1]);
  const end = Math.min(m[2] ? Number(m[2]) : data.length - 1, data.length - 1);
  res.writeHead(206, { 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${data.length}`, 'accept-ranges': 'bytes' });
  res.end(req.method === 'HEAD' ? undefined : data.subarray(start, end + 1));
}
