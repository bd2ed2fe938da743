/**
 * Lines on stderr for people (`--log-format text`, the default) or for machines
 * (`--log-format json`: one JSON object per line, with `time`, `level`, `type` and the fields).
 * Log lines, progress and the run summary all go through here, so a log shipper sees no stray
 * text line in JSON mode.
 */
import { CloudMaskError } from '../shared/errors.ts';

export type LogFormat = 'text' | 'json';
export type LogLevel = 'info' | 'warn' | 'error';

export interface Logger {
  readonly format: LogFormat;
  /** A line for people; in JSON mode `{type: 'log', level, msg}` (a `warning: ` prefix makes it a warn). */
  log(line: string): void;
  /** A structured record: text mode writes `text`, JSON mode the fields under `type`. */
  event(type: string, fields: Record<string, unknown>, text: string, level?: LogLevel): void;
}

export function parseLogFormat(value: unknown): LogFormat {
  if (value === undefined) return 'text';
  if (value === 'text' || value === 'json') return value;
  throw new CloudMaskError('BAD_OPTION', `--log-format must be text or json, got ${String(value)}`);
}

export function createLogger(format: LogFormat, write: (chunk: string) => void = (c) => void process.stderr.write(c)): Logger {
  const json = (record: Record<string, unknown>): void => write(`${JSON.stringify({ time: new Date().toISOString(), ...record })}\n`);
  return {
    format,
    log(line) {
      if (format === 'text') return write(`${line}\n`);
      const warn = line.startsWith('warning: ');
      json({ level: warn ? 'warn' : 'info', type: 'log', msg: warn ? line.slice('warning: '.length) : line });
    },
    event(type, fields, text, level = 'info') {
      if (format === 'text') write(`${text}\n`);
      else json({ level, type, ...fields });
    },
  };
}
