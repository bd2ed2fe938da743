/**
 * Progress for people: one updating line on a terminal, a line every 10 % (or 15 s) otherwise,
 * with rate and ETA. With a JSON logger, the same cadence as records of type `progress`.
 */
import type { Logger } from './log.ts';

export class Progress {
  private readonly started = performance.now();
  private lastLine = 0;
  private lastPct = -1;
  private readonly tty: boolean;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly out: NodeJS.WriteStream = process.stderr,
    private readonly quiet = false,
    private readonly logger?: Logger,
  ) {
    // A JSON log is read by programs: never the terminal's carriage-return line.
    this.tty = Boolean(out.isTTY) && logger?.format !== 'json';
  }

  update(done: number, resumed = 0): void {
    if (this.quiet) return;
    const now = performance.now();
    const secs = (now - this.started) / 1000;
    const fresh = Math.max(done - resumed, 0);
    const rate = secs > 0 ? fresh / secs : 0;
    const left = this.total - done;
    const eta = rate > 0 ? formatDuration(left / rate) : '?';
    const pct = Math.floor((100 * done) / this.total);
    const line = `${this.label}: ${done}/${this.total} chips (${pct}%)  ${rate.toFixed(1)} chips/s  ETA ${eta}`;
    if (this.tty) {
      if (now - this.lastLine > 200 || done === this.total) {
        this.out.write(`\r${line}\x1b[K${done === this.total ? '\n' : ''}`);
        this.lastLine = now;
      }
    } else if (Math.floor(pct / 10) > Math.floor(this.lastPct / 10) || now - this.lastLine > 15_000 || done === this.total) {
      if (this.logger?.format === 'json') {
        this.logger.event('progress', { scene: this.label, done, total: this.total, percent: pct, chips_per_s: Number(rate.toFixed(2)), eta_s: rate > 0 ? Math.round(left / rate) : null }, line);
      } else this.out.write(`${line}\n`);
      this.lastLine = now;
      this.lastPct = pct;
    }
  }
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
