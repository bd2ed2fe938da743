/**
 * STAC files on disk: the item beside each mask (`<name>.json`, after every output is written:
 * it carries their sizes and checksums) and the collection of an archive's out-dir. Both written
 * to a temporary name and renamed.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CloudMaskError } from '../shared/errors.ts';
import { unionBbox } from '../shared/footprint.ts';
import { buildStacItem, STAC_VERSION, type AssetKey, type ItemSpec, type WrittenAsset } from './stac-item.ts';

/** `<out>.json` beside the mask, its .tif/.tiff extension replaced. */
export const itemPathFor = (out: string): string => `${out.replace(/\.tiff?$/i, '')}.json`;

let version: string | null = null;
/** This package's version, for processing:software: the package.json found upwards (coordinator/ in the sources, dist/coordinator/ in the build). */
export function softwareVersion(): string {
  if (version === null) {
    let dir = path.dirname(fileURLToPath(import.meta.url));
    while (!existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
    version = (JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version: string }).version;
  }
  return version;
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Size and checksum of a written file, its href relative to the item's folder. */
export async function describeAsset(key: AssetKey, file: string, itemPath: string): Promise<WrittenAsset> {
  const [st, sha256] = await Promise.all([stat(file), sha256File(file)]);
  const rel = path.relative(path.dirname(path.resolve(itemPath)), path.resolve(file));
  return { key, href: rel.startsWith('..') ? path.resolve(file) : `./${rel.split(path.sep).join('/')}`, size: st.size, sha256 };
}

async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`, { flag: 'wx' });
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {});
    throw new CloudMaskError('OUTPUT_FAILED', `cannot write ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** Writes the item of spec at `itemPath`; returns why it has no geometry, if it has none. */
export async function writeStacItem(itemPath: string, spec: Omit<ItemSpec, 'software'>): Promise<string | null> {
  const { item, note } = buildStacItem({ ...spec, software: { name: 'improve-cloud-mask', version: softwareVersion() } });
  await writeJsonAtomic(itemPath, item);
  return note;
}

export interface CollectionSpec {
  /** Collection id (the archive's name). */
  id: string;
  description: string;
  /** Item files to link; they are updated to point back at the collection. */
  items: string[];
}

type Json = Record<string, unknown>;

/**
 * Writes `<dir>/collection.json` linking `items` (extent: the union of their bboxes and
 * datetimes) and gives each item its `collection` and links back (collection, parent, root).
 * Returns the collection's path.
 */
export async function writeStacCollection(dir: string, spec: CollectionSpec): Promise<string> {
  const file = path.join(dir, 'collection.json');
  const items: Array<{ path: string; item: Json }> = [];
  for (const p of spec.items) {
    try {
      items.push({ path: p, item: JSON.parse(await readFile(p, 'utf8')) as Json });
    } catch (err) {
      throw new CloudMaskError('OUTPUT_FAILED', `STAC collection: cannot read item ${p}: ${(err as Error).message}`, { cause: err });
    }
  }
  const rel = (from: string, to: string): string => `./${path.relative(path.dirname(path.resolve(from)), path.resolve(to)).split(path.sep).join('/')}`;
  for (const { path: p, item } of items) {
    const back = ['collection', 'parent', 'root'].map((r) => ({ rel: r, href: rel(p, file), type: 'application/json' }));
    const links = ((item.links as Json[] | undefined) ?? []).filter((l) => !['collection', 'parent', 'root'].includes(String(l.rel)));
    await writeJsonAtomic(p, { ...item, collection: spec.id, links: [...links, ...back] });
  }
  const bboxes = items.map((i) => i.item.bbox).filter((b): b is [number, number, number, number] => Array.isArray(b) && b.length === 4);
  const times = items.map((i) => (i.item.properties as Json | undefined)?.datetime).filter((t): t is string => typeof t === 'string').sort();
  const collection = {
    type: 'Collection',
    stac_version: STAC_VERSION,
    id: spec.id,
    description: spec.description,
    license: 'proprietary',
    extent: {
      spatial: { bbox: [bboxes.length ? unionBbox(bboxes) : [-180, -90, 180, 90]] },
      temporal: { interval: [[times[0] ?? null, times[times.length - 1] ?? null]] },
    },
    links: [
      // Relative links only (no self): the archive stays valid when moved or served elsewhere.
      { rel: 'root', href: './collection.json', type: 'application/json' },
      // Outputs derive from Copernicus Sentinel data; the licence follows theirs.
      { rel: 'license', href: 'https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice', title: 'Contains modified Copernicus Sentinel data' },
      ...items.map((i) => ({ rel: 'item', href: rel(file, i.path), type: 'application/geo+json' })),
    ],
  };
  await writeJsonAtomic(file, collection);
  return file;
}
