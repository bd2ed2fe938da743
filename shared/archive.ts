/**
 * Archive manifests for `batch`: one scene per line ("INPUT [PRODUCT_MASK]", # comments) or a
 * JSON array of {input, product_mask?, name?}. Each scene gets a unique output name.
 */
import { CloudMaskError } from './errors.ts';

export interface ArchiveScene {
  input: string;
  productMask: string;
  /** Output file stem, unique within the archive. */
  name: string;
}

function stem(input: string): string {
  const last = input.replace(/[?#].*$/, '').replace(/[\\/]+$/, '').split(/[\\/]/).pop() ?? 'scene';
  return safeStem(last.replace(/\.(tiff?|json)$/i, ''));
}

/** A file-name-safe stem: no path separators, no leading dot (a name like '..' must not escape). */
function safeStem(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_') || 'scene';
}

export function parseArchiveManifest(text: string, defaultMask = 'scl', where = 'manifest'): ArchiveScene[] {
  const trimmed = text.trim();
  let rows: { input: string; productMask: string; name?: string }[];
  if (trimmed.startsWith('[')) {
    let doc: unknown;
    try {
      doc = JSON.parse(trimmed);
    } catch (err) {
      throw new CloudMaskError('BAD_OPTION', `${where}: not valid JSON (${(err as Error).message})`);
    }
    rows = (doc as unknown[]).map((item, i) => {
      const o = item as { input?: unknown; product_mask?: unknown; name?: unknown };
      if (!o || typeof o.input !== 'string') throw new CloudMaskError('BAD_OPTION', `${where}: entry ${i + 1} needs "input"`);
      if (o.product_mask !== undefined && typeof o.product_mask !== 'string') throw new CloudMaskError('BAD_OPTION', `${where}: entry ${i + 1}: product_mask must be a string`);
      return { input: o.input, productMask: (o.product_mask as string | undefined) ?? defaultMask, name: typeof o.name === 'string' ? o.name : undefined };
    });
  } else {
    rows = [];
    trimmed.split('\n').forEach((raw, i) => {
      const line = raw.replace(/#.*/, '').trim();
      if (!line) return;
      const parts = line.split(/\s+/);
      if (parts.length > 2) throw new CloudMaskError('BAD_OPTION', `${where}:${i + 1}: expected "INPUT [PRODUCT_MASK]", got ${parts.length} fields`);
      rows.push({ input: parts[0], productMask: parts[1] ?? defaultMask });
    });
  }
  if (rows.length === 0) throw new CloudMaskError('BAD_OPTION', `${where}: lists no scenes`);
  return nameScenes(rows);
}

/** Gives each scene a unique output stem: its name (or its input's), then -2, -3, ... */
export function nameScenes(rows: { input: string; productMask: string; name?: string }[]): ArchiveScene[] {
  const used = new Set<string>();
  return rows.map((r) => {
    const base = r.name !== undefined ? safeStem(r.name) : stem(r.input);
    let name = base;
    for (let k = 2; used.has(name); k++) name = `${base}-${k}`;
    used.add(name);
    return { input: r.input, productMask: r.productMask, name };
  });
}
