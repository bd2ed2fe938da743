/** Worker events and pool state -> Prometheus metrics (names from shared/metric-names.ts). */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { defaultMetricLabels, WORKER_METRICS as M } from '../shared/metric-names.ts';
import type { WorkerEvent } from './node.ts';
import type { ChipPool } from './pool.ts';

export interface WorkerMetrics {
  onEvent(event: WorkerEvent): void;
  onBadMessage(): void;
}

export function createWorkerMetrics(registry: Registry, pool: ChipPool): WorkerMetrics {
  // On every series of the registry, process metrics included.
  registry.setDefaultLabels(defaultMetricLabels('worker'));
  const registers = [registry];
  const stages = new Histogram({ name: M.chipStageDuration, help: 'Per-chip stage durations, seconds.', labelNames: ['stage'], registers, buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5] });
  const chipDuration = new Histogram({ name: M.chipDuration, help: 'Chip wall time on the worker, pull to ack, seconds (a job\'s time shared by its chips).', registers, buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] });
  const batch = new Histogram({ name: M.inferenceBatchSize, help: 'Chips per job (one onnxruntime run per model when the model takes a batch).', registers, buckets: [1, 2, 4, 8, 16] });
  const load = new Histogram({ name: M.modelLoadDuration, help: 'Model session load time, seconds.', registers, buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10] });
  const processed = new Counter({ name: M.chipsProcessed, help: 'Chips processed and published.', registers });
  const retried = new Counter({ name: M.chipsRetried, help: 'Chip attempts that failed and were handed back for retry.', registers });
  const errors = new Counter({ name: M.errors, help: 'Chip errors by code.', labelNames: ['code'], registers });
  const bad = new Counter({ name: M.badMessages, help: 'Malformed messages terminated on arrival.', registers });
  new Gauge({ name: M.poolThreads, help: 'Inference threads.', registers, collect() { this.set(pool.threads); } });
  new Gauge({ name: M.poolUtilization, help: 'Share of thread time spent on chips since start (0..1).', registers, collect() { this.set(pool.utilization); } });
  new Gauge({ name: M.poolQueueLength, help: 'Chips waiting for a free thread.', registers, collect() { this.set(pool.queueSize); } });
  // Totals kept by the pool (the threads report deltas with each job); shown as they stand.
  const io = (): ChipPool['io'] => pool.io;
  new Counter({
    name: M.httpRequests, help: 'Http attempts of the chip threads by outcome (ok; retry: failed and tried again; error: given up).', labelNames: ['outcome'], registers,
    collect() {
      this.reset();
      for (const [outcome, n] of Object.entries(io().httpRequests)) this.inc({ outcome }, n);
    },
  });
  new Counter({ name: M.httpRetries, help: 'Http attempts that failed and were tried again.', registers, collect() { this.reset(); this.inc(io().httpRequests.retry); } });
  new Counter({ name: M.httpBytes, help: 'Bytes of http response bodies received by the chip threads.', registers, collect() { this.reset(); this.inc(io().httpBytes); } });
  new Counter({ name: M.tileDecodes, help: 'Compressed source tiles decoded.', registers, collect() { this.reset(); this.inc(io().decodes); } });

  return {
    onEvent(e) {
      if (e.type === 'job-done') {
        const n = e.results.length;
        batch.observe(n);
        for (const result of e.results) {
          const t = result.timings;
          processed.inc();
          chipDuration.observe(e.totalMs / n / 1000);
          stages.observe({ stage: 'read' }, t.readMs / 1000);
          if (!result.skipped) {
            stages.observe({ stage: 'inference' }, t.inferenceMs / 1000);
            // Each model alone only when they ran as two sessions.
            if (typeof t.cloudMs === 'number') stages.observe({ stage: 'cloud_inference' }, t.cloudMs / 1000);
            if (typeof t.shadowMs === 'number') stages.observe({ stage: 'shadow_inference' }, t.shadowMs / 1000);
          }
          stages.observe({ stage: 'threshold' }, t.thresholdMs / 1000);
          stages.observe({ stage: 'publish' }, e.publishMs / n / 1000);
          if (t.modelLoadMs > 0) load.observe(t.modelLoadMs / 1000);
        }
      } else if (e.type === 'chip-retry') {
        retried.inc();
        errors.inc({ code: e.error.code });
      } else if (e.type === 'chip-failed') {
        errors.inc({ code: e.failure.error.code });
      }
    },
    onBadMessage: () => bad.inc(),
  };
}
