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
}
