/** What every command gets from main(): resolved once, from flags and the environment. */
import type { Logger } from './log.ts';
import type { Flags } from './options.ts';

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

/**
 * NATS connection settings from the environment, under the names the `nats` CLI reads (its
 * context variables), so secrets need not be flags (flags show in `ps` and in pod specs).
 * Flags given on the command line win.
 */
export const NATS_ENV: Record<string, string> = {
  NATS_URL: 'nats',
  NATS_USER: 'nats-user',
  NATS_PASSWORD: 'nats-pass',
  NATS_TOKEN: 'nats-token',
  NATS_CREDS: 'nats-creds',
  NATS_NKEY: 'nats-nkey',
  NATS_CA: 'nats-tls-ca',
  NATS_CERT: 'nats-tls-cert',
  NATS_KEY: 'nats-tls-key',
};

/** `flags` with the NATS settings the environment gives and the flags do not. */
export function withNatsEnv<F extends Flags>(flags: F, env: Record<string, string | undefined>): F {
  const out: Flags = { ...flags };
  for (const [name, flag] of Object.entries(NATS_ENV)) {
    const value = env[name];
    if (out[flag] === undefined && value !== undefined && value !== '') out[flag] = value;
  }
  return out as F;
}
