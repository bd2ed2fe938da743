/** What every command gets from main(): resolved once, from flags and the environment. */
import type { Logger } from './log.ts';

export interface CliEnv {
  /** --models-dir, else $ICM_MODELS_DIR, else the package's models/. */
  modelsDir: string;
  /** A line on stderr (text or JSON, per --log-format). */
  log: (line: string) => void;
  logger: Logger;
  quiet: boolean;
  /** The folder holding package.json (the repository, or the image's /app). */
  packageRoot: string;
  /** 'Name: value' lines from ICM_HTTP_HEADERS (read once in main); --http-header adds to them. */
  httpHeaderLines?: string[];
}

/** ICM_HTTP_HEADERS: one 'Name: value' per line (a literal \\n separates too). Here, not in options.ts: main() loads nothing heavy. */
export function splitHeaderLines(text: string): string[] {
  return text
    .split(/\r?\n|\\n/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
}
