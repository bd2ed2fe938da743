/**
 * Output paths checked before any work: an output that is one of the inputs (the scene, a band
 * of a band folder, the product mask) or two outputs on one path would lose data silently, as
 * each output is renamed into place over whatever is there. And the folders a run creates for
 * its outputs go again when the run fails, so a failed run leaves nothing behind.
 */
import { readdirSync, realpathSync, statSync } from 'node:fs';
import { mkdir, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { CloudMaskError, fsReason } from '../shared/errors.ts';

const isUrl = (s: string): boolean => /^[a-z][a-z0-9+.-]*:\/\//i.test(s);

/** One output file and the flag that names it. */
export interface NamedPath {
  flag: string;
  file: string;
}

/** The files a local input stands for: the file itself, or every file directly in its folder. */
export function inputFiles(flag: string, input: string | undefined): NamedPath[] {
  // 'scl', 'none', 'product': keywords, not files (see --product-mask).
  if (!input || isUrl(input) || ['scl', 'none', 'product'].includes(input)) return [];
  const abs = path.resolve(input);
  let st;
  try {
    st = statSync(abs);
  } catch {
    return [{ flag, file: abs }];
  }
  if (!st.isDirectory()) return [{ flag, file: abs }];
  return readdirSync(abs, { withFileTypes: true })
    .filter((d) => d.isFile() || d.isSymbolicLink())
    .map((d) => ({ flag, file: path.join(abs, d.name) }));
}

/** The same file whatever the spelling: symlinks resolved, hard links by device and inode. */
function identity(file: string): string {
  const abs = path.resolve(file);
  try {
    const st = statSync(abs);
    return `inode:${st.dev}:${st.ino}`;
  } catch {
    // Not there yet: its folder may still be reached through a symlink.
    try {
      return `path:${path.join(realpathSync(path.dirname(abs)), path.basename(abs))}`;
    } catch {
      return `path:${abs}`;
    }
  }
}

/** Throws BAD_OPTION when an output is an input, or two outputs share a path. */
export function checkOutputPaths(outputs: NamedPath[], inputs: NamedPath[]): void {
  const inputIds = new Map(inputs.map((i) => [identity(i.file), i]));
  const seen = new Map<string, NamedPath>();
  for (const o of outputs) {
    const id = identity(o.file);
    const input = inputIds.get(id);
    if (input) throw new CloudMaskError('BAD_OPTION', `${o.flag} ${o.file} is the input ${input.flag} ${input.file}: writing it would destroy the input; choose another output path`);
    const other = seen.get(id);
    if (other) throw new CloudMaskError('BAD_OPTION', `${other.flag} and ${o.flag} both write ${o.file}: one would overwrite the other; give them different paths`);
    seen.set(id, o);
  }
}

/**
 * Creates the folders the outputs go in. Returns an undo that removes the folders this call
 * created, deepest first, as long as they are empty (a failed run leaves no empty probs/ behind).
 */
export async function createOutputFolders(folders: string[]): Promise<() => Promise<void>> {
  const created: string[] = [];
  const undo = async (): Promise<void> => {
    for (const dir of created.sort((a, b) => b.length - a.length)) await rmdir(dir).catch(() => {});
  };
  let current = '';
  try {
    for (const folder of folders) {
      const abs = (current = path.resolve(folder));
      const first = await mkdir(abs, { recursive: true });
      if (!first) continue;
      // mkdir returns the topmost folder it made; everything from there down to `abs` is ours.
      for (let d = abs; d.length >= first.length; d = path.dirname(d)) created.push(d);
    }
  } catch (err) {
    await undo();
    throw new CloudMaskError('OUTPUT_FAILED', `cannot create the output folder ${current}: ${fsReason(err)}`, { cause: err });
  }
  return undo;
}
