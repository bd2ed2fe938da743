/**
 * Which sources a worker may read: files under its allowed roots, URLs under its allowed
 * prefixes. Anything else in a job is refused before a byte is read.
 */
import path from 'node:path';
import { CloudMaskError } from '../shared/errors.ts';
import type { SceneSource } from '../raster/types.ts';

const isUrl = (s: string): boolean => /^https?:\/\//i.test(s);

export function sourceHrefs(source: SceneSource): string[] {
  if (source.kind === 'stacked') return [source.href];
  return source.scl ? [...source.bands, source.scl] : [...source.bands];
}

/** True when `href` lies under one of `roots` (directories or URL prefixes). */
export function isAllowed(href: string, roots: string[]): boolean {
  if (isUrl(href)) {
    return roots.some((r) => isUrl(r) && href.startsWith(r.endsWith('/') ? r : `${r}/`));
  }
  const target = path.resolve(href);
  return roots.some((r) => {
    if (isUrl(r)) return false;
    const rel = path.relative(path.resolve(r), target);
    return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
  });
}

/** Throws FORBIDDEN_SOURCE naming the first href outside the allowed roots. */
export function assertAllowed(source: SceneSource, roots: string[]): void {
  for (const href of sourceHrefs(source)) {
    if (!isAllowed(href, roots)) {
      throw new CloudMaskError('FORBIDDEN_SOURCE', `source ${href} is outside this worker's allowed roots (${roots.join(', ')}); start the worker with --allow-root`);
    }
  }
}
