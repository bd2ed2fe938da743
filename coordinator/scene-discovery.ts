/**
 * Where an archive's scenes come from: a manifest, a static STAC catalog (catalog, collection,
 * ItemCollection or single item; local or http(s)), or a STAC API item search (POST /search,
 * following `next` links). Every source ends as the same list of {@link ArchiveScene}s, so
 * `batch` and `submit` do not care which one the user gave.
 *
 * An item whose assets lack a band is reported and skipped, never fatal: one odd item in a
 * search of thousands must not stop the archive.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { missingStacBands, type StacItem } from '../raster/source.ts';
import { fetchFailure, httpStatusError, isUrl } from '../raster/tiff-file.ts';
import { nameScenes, parseArchiveManifest, type ArchiveScene } from '../shared/archive.ts';
import { CloudMaskError } from '../shared/errors.ts';

export type SceneListSpec =
  | { manifest: string }
  | { stac: string; maxCloudCover?: number; limit?: number }
  | { stacApi: string; collection?: string[]; bbox?: [number, number, number, number]; datetime?: string; maxCloudCover?: number; limit?: number };

export interface DiscoveryOptions {
  /** Product mask of every discovered scene ('scl', 'none', ...). */
  defaultProductMask: string;
  log: (line: string) => void;
  /** Headers sent on every http(s) request (authentication); never logged. */
  headers?: Record<string, string>;
  /** The fetch to use; the global one by default. */
  fetch?: typeof fetch;
}

export interface Discovered {
  scenes: ArchiveScene[];
  /** Items found but not usable, with the reason. */
  skipped: { id: string; reason: string }[];
}

/** Upper bounds: a runaway catalog (a link cycle, a search that never ends) stops here. */
export const DISCOVERY_LIMITS = { maxScenes: 1_000_000, maxDocuments: 200_000, pageSize: 100 } as const;

export async function discoverScenes(spec: SceneListSpec, opts: DiscoveryOptions): Promise<Discovered> {
  if ('manifest' in spec) {
    let text: string;
    try {
      text = await readFile(spec.manifest, 'utf8');
    } catch (err) {
      throw new CloudMaskError('INPUT_NOT_FOUND', `--manifest ${spec.manifest}: ${(err as Error).message}`);
    }
    return { scenes: parseArchiveManifest(text, opts.defaultProductMask, spec.manifest), skipped: [] };
  }
  const io = new JsonReader(opts);
  const found: Found[] = 'stac' in spec ? await walkCatalog(spec.stac, io, spec.limit) : await searchApi(spec, io);
  const where = 'stac' in spec ? spec.stac : spec.stacApi;
  const result = toScenes(found, spec.maxCloudCover, opts.defaultProductMask);
  for (const s of result.skipped) opts.log(`discovery: skipped item ${s.id}: ${s.reason}`);
  if (result.scenes.length === 0) {
    throw new CloudMaskError('BAD_INPUT', `${where}: no usable scenes found (${found.length} items, ${result.skipped.length} skipped)`);
  }
  opts.log(`discovery: ${result.scenes.length} scenes from ${where}${result.skipped.length ? ` (${result.skipped.length} items skipped)` : ''}`);
  return result;
}

/** An item and the href a worker will read it from. */
interface Found {
  item: StacItem;
  href: string | null;
}

function toScenes(found: Found[], maxCloudCover: number | undefined, productMask: string): Discovered {
  const rows: { input: string; productMask: string; name?: string }[] = [];
  const skipped: Discovered['skipped'] = [];
  const seen = new Set<string>();
  for (const { item, href } of found) {
    const id = typeof item.id === 'string' && item.id ? item.id : (href ?? '(no id)');
    const cover = item.properties?.['eo:cloud_cover'];
    if (maxCloudCover !== undefined && typeof cover === 'number' && cover > maxCloudCover) continue;
    if (!href) {
      skipped.push({ id, reason: 'no link a worker can read it from (self link missing or not http(s)/local)' });
      continue;
    }
    if (seen.has(href)) continue;
    seen.add(href);
    const missing = missingStacBands(item);
    if (missing.length > 0) {
      skipped.push({ id, reason: `no asset for band${missing.length > 1 ? 's' : ''} ${missing.join(', ')}` });
      continue;
    }
    rows.push({ input: href, productMask, name: id });
  }
  return { scenes: rows.length ? nameScenes(rows) : [], skipped };
}

/** Reads JSON documents from files or http(s), counting them against the document bound. */
class JsonReader {
  documents = 0;
  constructor(private readonly opts: DiscoveryOptions) {}

  private count(where: string): void {
    if (++this.documents > DISCOVERY_LIMITS.maxDocuments) {
      throw new CloudMaskError('BAD_INPUT', `${where}: more than ${DISCOVERY_LIMITS.maxDocuments} STAC documents; is there a link cycle?`);
    }
  }

  async get(ref: string, label: string): Promise<unknown> {
    this.count(ref);
    if (!isUrl(ref)) {
      let text: string;
      try {
        text = await readFile(ref, 'utf8');
      } catch (err) {
        throw new CloudMaskError('INPUT_NOT_FOUND', `${label} ${ref}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      return parseJson(text, label, ref);
    }
    return this.request(ref, label, { method: 'GET' });
  }

  async post(url: string, body: unknown, label: string): Promise<unknown> {
    this.count(url);
    return this.request(url, label, { method: 'POST', body: JSON.stringify(body), contentType: 'application/json' });
  }

  private async request(url: string, label: string, r: { method: string; body?: string; contentType?: string }): Promise<unknown> {
    const headers: Record<string, string> = { accept: 'application/geo+json, application/json', ...this.opts.headers };
    if (r.contentType) headers['content-type'] = r.contentType;
    let res: Response;
    try {
      res = await (this.opts.fetch ?? fetch)(url, { method: r.method, headers, body: r.body });
    } catch (err) {
      throw new CloudMaskError('TRANSIENT_IO', `${label} ${url}: request failed (${fetchFailure(err)})`, { cause: err });
    }
    if (res.status === 405 && r.method === 'POST') {
      throw new CloudMaskError('BAD_INPUT', `${label} ${url}: the server does not accept POST (is this a STAC API with item search?)`);
    }
    if (!res.ok) await res.body?.cancel();
    httpStatusError(res.status, label, url);
    return parseJson(await res.text(), label, url);
  }
}

function parseJson(text: string, label: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new CloudMaskError('BAD_INPUT', `${label} ${where} is not valid JSON (${(err as Error).message})`);
  }
}

interface StacLink {
  rel?: unknown;
  href?: unknown;
  method?: unknown;
  body?: unknown;
  merge?: unknown;
}

interface StacDoc extends StacItem {
  collection?: unknown;
  links?: StacLink[];
  features?: StacDoc[];
}

/** Resolves a link's href against the document it was found in (a URL or a file path). */
function resolveRef(href: string, base: string): string {
  if (isUrl(href) || isUrl(base)) return new URL(href, isUrl(base) ? base : `file://${base}`).toString();
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(href)) return href;
  return path.resolve(path.dirname(base), href);
}

/** A worker-readable href (http(s) or a local file), or null (s3:// and the like). */
const readable = (ref: string): string | null => (isUrl(ref) || !/^[a-z][a-z0-9+.-]*:/i.test(ref) ? ref : null);

const linksOf = (doc: StacDoc, rel: string): StacLink[] => (Array.isArray(doc.links) ? doc.links.filter((l) => l && l.rel === rel && typeof l.href === 'string') : []);

/** Walks a static catalog breadth first: children, items, ItemCollection pages. */
async function walkCatalog(root: string, io: JsonReader, limit: number = DISCOVERY_LIMITS.maxScenes): Promise<Found[]> {
  const start = isUrl(root) ? root : path.resolve(root);
  const queue = [start];
  const visited = new Set<string>();
  const found: Found[] = [];
  while (queue.length > 0 && found.length < limit) {
    const ref = queue.shift()!;
    if (visited.has(ref)) continue;
    visited.add(ref);
    const doc = (await io.get(ref, 'STAC document')) as StacDoc;
    if (!doc || typeof doc !== 'object') throw new CloudMaskError('BAD_INPUT', `STAC document ${ref} is not a JSON object`);
    if (doc.type === 'Feature') {
      found.push({ item: doc, href: ref });
      continue;
    }
    if (doc.type === 'FeatureCollection') {
      for (const f of Array.isArray(doc.features) ? doc.features : []) found.push({ item: f, href: itemHref(f, null) });
      for (const l of linksOf(doc, 'next')) queue.push(resolveRef(l.href as string, ref));
      continue;
    }
    if (doc.type !== 'Catalog' && doc.type !== 'Collection') {
      throw new CloudMaskError('BAD_INPUT', `STAC document ${ref}: type ${JSON.stringify(doc.type)} is not a Catalog, Collection, FeatureCollection or Feature`);
    }
    for (const l of [...linksOf(doc, 'item'), ...linksOf(doc, 'child')]) queue.push(resolveRef(l.href as string, ref));
  }
  return found.slice(0, limit);
}

/** An inline item's own href: its self link, else the API's standard item endpoint. */
function itemHref(item: StacDoc, api: string | null): string | null {
  const self = linksOf(item, 'self')[0]?.href as string | undefined;
  const r = self ? readable(self) : null;
  if (r) return r;
  if (api && typeof item.collection === 'string' && typeof item.id === 'string') {
    return `${api}/collections/${encodeURIComponent(item.collection)}/items/${encodeURIComponent(item.id)}`;
  }
  return null;
}

type ApiSpec = Extract<SceneListSpec, { stacApi: string }>;

/** STAC API item search: POST /search, then each `next` link (POST with body/merge, or GET). */
async function searchApi(spec: ApiSpec, io: JsonReader): Promise<Found[]> {
  const api = spec.stacApi.replace(/\/+$/, '');
  const limit: number = spec.limit ?? DISCOVERY_LIMITS.maxScenes;
  let body: Record<string, unknown> = { limit: Math.min(DISCOVERY_LIMITS.pageSize, limit) };
  if (spec.collection?.length) body.collections = spec.collection;
  if (spec.bbox) body.bbox = spec.bbox;
  if (spec.datetime) body.datetime = spec.datetime;
  // The query extension; servers without it ignore it, and toScenes filters again.
  if (spec.maxCloudCover !== undefined) body.query = { 'eo:cloud_cover': { lte: spec.maxCloudCover } };
  const found: Found[] = [];
  let page: { url: string; method: 'GET' | 'POST' } | null = { url: `${api}/search`, method: 'POST' };
  const seenPages = new Set<string>();
  while (page && found.length < limit) {
    const key = `${page.method} ${page.url} ${page.method === 'POST' ? JSON.stringify(body) : ''}`;
    if (seenPages.has(key)) throw new CloudMaskError('BAD_INPUT', `STAC API ${api}: the next link repeats a page already read`);
    seenPages.add(key);
    const doc = (page.method === 'POST' ? await io.post(page.url, body, 'STAC API search') : await io.get(page.url, 'STAC API search')) as StacDoc;
    if (!doc || doc.type !== 'FeatureCollection' || !Array.isArray(doc.features)) {
      throw new CloudMaskError('BAD_INPUT', `STAC API search ${page.url} did not answer with a FeatureCollection`);
    }
    for (const f of doc.features) found.push({ item: f, href: itemHref(f, api) });
    const next = linksOf(doc, 'next')[0];
    if (!next || doc.features.length === 0) break;
    const url = resolveRef(next.href as string, page.url);
    if (typeof next.method === 'string' && next.method.toUpperCase() === 'POST') {
      const nextBody = next.body && typeof next.body === 'object' ? (next.body as Record<string, unknown>) : {};
      body = next.merge === true ? { ...body, ...nextBody } : nextBody;
      page = { url, method: 'POST' };
    } else {
      page = { url, method: 'GET' };
    }
  }
  return found.slice(0, limit);
}
