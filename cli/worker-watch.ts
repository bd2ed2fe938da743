/**
 * A coordinator with jobs queued and no worker taking them would otherwise wait in silence,
 * forever. Every `periodMs` in which no chip finished, while jobs wait and none is taken, it
 * says so, with what the workers' consumer shows.
 */
import type { CoordinatorEvent } from '../coordinator/scene-run.ts';

export interface WorkerActivity {
  consumer: string;
  pending: number;
  taken: number;
  pulling: number;
}

export interface WorkerWatch {
  onEvent(e: CoordinatorEvent): void;
  stop(): void;
}

export function watchWorkers(activity: () => Promise<WorkerActivity | null>, periodMs: number, log: (line: string) => void): WorkerWatch {
  let finishedSinceLast = false;
  let everFinished = false;
  const started = performance.now();
  const timer = setInterval(() => {
    if (finishedSinceLast) {
      finishedSinceLast = false;
      return;
    }
    void activity().then((a) => {
      if (!a || a.pending === 0 || a.taken > 0) return;
      const secs = Math.round((performance.now() - started) / 1000);
      const when = everFinished ? `for ${Math.round(periodMs / 1000)} s` : `since the start ${secs} s ago`;
      log(`warning: no worker has taken a job ${when}: ${a.pending} jobs waiting on consumer ${a.consumer}, which sees ${a.pulling} worker pull request${a.pulling === 1 ? '' : 's'} (0: no worker is connected; start one with 'improve-cloud-mask worker --nats ...')`);
    });
  }, periodMs);
  // Only a reminder: it must not keep a finished process alive.
  timer.unref();
  return {
    onEvent: (e) => {
      if (e.type === 'chip-done' && !e.replayed) {
        finishedSinceLast = true;
        everFinished = true;
      }
    },
    stop: () => clearInterval(timer),
  };
}
