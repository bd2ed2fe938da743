/**
 * Which sources a worker may read: files under its allowed roots, URLs under its allowed
 * prefixes. Anything else in a job is refused before a byte is read. Files are judged by what
 * they resolve to (symlinks followed), so a link inside a root that points outside it is refused.
 */
import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { CloudMaskError } from '../shared/errors.ts';
import type { SceneSource } from '../raster/types.ts';

const isUrl = (s: string): boolean => /^https?:\/\//i.test(s);

export function sourceHrefs(source: SceneSource): string[] {
  if (source.kind === 'stacked') return [source.href];
  return source.scl ? [...source.bands, source.scl] : [...source.bands];
}

/** True when `href` lies under one of `roots` (directories or URL prefixes), by its spelling alone. */
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

/**
 * The roots as the worker will compare them: folders resolved to their real paths. A root that
 * does not exist or is not a folder is a mistyped --allow-root: refused at start, not job by job.
 */
export async function resolveAllowedRoots(roots: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const r of roots) {
    if (isUrl(r)) {
      out.push(r);
      continue;
    }
    let real: string;
    try {
      real = await realpath(r);
    } catch (err) {
      throw new CloudMaskError('BAD_OPTION', `--allow-root ${r} does not exist (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`);
    }
    if (!(await stat(real)).isDirectory()) throw new CloudMaskError('BAD_OPTION', `--allow-root ${r} is not a folder`);
    out.push(real);
  }
  return out;
}

/** What a local href resolves to; for a file not there, its nearest existing folder resolved plus the rest. */
async function resolved(href: string): Promise<string> {
  let dir = path.resolve(href);
  const rest: string[] = [];
  for (;;) {
    try {
      return path.join(await realpath(dir), ...rest);
    } catch {
      if (path.dirname(dir) === dir) return path.resolve(href);
      rest.unshift(path.basename(dir));
      dir = path.dirname(dir);
    }
  }
}

/**
 * Throws FORBIDDEN_SOURCE naming the first href outside the allowed roots. `roots` are real
 * paths (see {@link resolveAllowedRoots}); files are judged by their real paths.
 */
export async function assertAllowed(source: SceneSource, roots: string[]): Promise<void> {
  // Under a filesystem root every file is allowed, whatever it resolves to (the embedded run).
  const anyFile = roots.some((r) => !isUrl(r) && path.parse(r).root === r);
  for (const href of sourceHrefs(source)) {
    if (anyFile && !isUrl(href)) continue;
    const real = isUrl(href) ? href : await resolved(href);
    if (isAllowed(real, roots)) continue;
    const via = real === path.resolve(href) || isUrl(href) ? '' : ` (it resolves to ${real}: a link may not lead out of a root)`;
    throw new CloudMaskError('FORBIDDEN_SOURCE', `source ${href} is outside this worker's allowed roots (${roots.join(', ')})${via}; start the worker with --allow-root`);
  }
}

/** How long a source that passed stays passed, ms. */
const PASSED_MS = 5000;

/**
 * assertAllowed for a worker's jobs, with each source that passed remembered for a few seconds:
 * every job of a scene names the same files, and resolving each of them once a job (13 real
 * paths) took about 0.1 s of a worker's main thread on a full tile. A refused source is checked
 * again every time. What the check guards against is a job naming files outside the roots; a
 * link inside a root changed meanwhile needs write access to the root, which can put any bytes
 * there anyway.
 */
export class AllowedSources {
  private readonly passed = new Map<string, number>();

  constructor(private readonly roots: string[]) {}

  async assert(source: SceneSource): Promise<void> {
    const key = sourceHrefs(source).join('\n');
    const now = performance.now();
    if ((this.passed.get(key) ?? 0) > now) return;
    await assertAllowed(source, this.roots);
    if (this.passed.size >= 64) this.passed.clear();
    this.passed.set(key, now + PASSED_MS);
  }
}
