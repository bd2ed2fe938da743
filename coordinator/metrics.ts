/** Coordinator events -> Prometheus metrics (names from shared/metric-names.ts). */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { COORDINATOR_METRICS as M, defaultMetricLabels } from '../shared/metric-names.ts';
import type { CoordinatorEvent } from './scene-run.ts';

export interface CoordinatorMetrics {
  onEvent(event: CoordinatorEvent): void;
}

/** `pending` reads the JetStream consumer's backlog at scrape time (null when unknown). */
export function createCoordinatorMetrics(registry: Registry, pending?: () => Promise<number | null>): CoordinatorMetrics {
  // On every series of the registry, process metrics included (registered last, it wins in an embedded run).
  registry.setDefaultLabels(defaultMetricLabels('coordinator'));
  const registers = [registry];
  const counter = (name: string, help: string): Counter => new Counter({ name, help, registers });
  const scenesStarted = counter(M.scenesStarted, 'Scenes whose chips started being planned.');
  const scenesCompleted = counter(M.scenesCompleted, 'Scenes whose output was written.');
  const scenesFailed = counter(M.scenesFailed, 'Scenes that ended failed.');
  const published = counter(M.chipsPublished, 'Tile jobs published.');
  const completed = counter(M.chipsCompleted, 'Chip results stitched (first arrival).');
  const redelivered = counter(M.chipsRedelivered, 'Chip results that arrived again and were ignored.');
  const deadLettered = counter(M.chipsDeadLettered, 'Chips dead-lettered after their last delivery.');
  const resumed = counter(M.chipsResumed, 'Chip results replayed from before a coordinator restart.');
  const pixels = counter(M.pixelsProcessed, 'Scene pixels covered by stitched chips.');
  const inFlight = new Gauge({ name: M.chipsInFlight, help: 'Chips published and not yet completed.', registers });
  const remaining = new Gauge({ name: M.chipsRemaining, help: 'Chips of running scenes not yet completed.', registers });
  new Gauge({
    name: M.consumerPending,
    help: 'Tile jobs waiting in the workers consumer (queue lag).',
    registers,
    async collect() {
      const n = pending ? await pending().catch(() => null) : null;
      if (n !== null) this.set(n);
    },
  });
  const sceneDuration = new Histogram({ name: M.sceneDuration, help: 'Scene wall time, seconds.', registers, buckets: [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800] });
  const stages = new Histogram({ name: M.stageDuration, help: 'Coordinator stage durations, seconds.', labelNames: ['stage'], registers, buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30] });
  const cloudFraction = new Histogram({ name: M.sceneCloudFraction, help: 'Cloud fraction of finished scenes.', registers, buckets: [0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1] });
  const left = new Map<string, number>();

  return {
    onEvent(e) {
      switch (e.type) {
        case 'scene-start':
          scenesStarted.inc();
          resumed.inc(e.resumed);
          left.set(e.runKey, e.chips - e.resumed);
          remaining.inc(e.chips - e.resumed);
          break;
        case 'chip-published':
          published.inc();
          inFlight.inc();
          break;
        case 'chip-done':
          if (e.duplicate) redelivered.inc();
          else if (!e.replayed) {
            completed.inc();
            pixels.inc(e.pixels);
            inFlight.dec();
            remaining.dec();
            left.set(e.runKey, (left.get(e.runKey) ?? 1) - 1);
          }
          break;
        case 'stage':
          stages.observe({ stage: e.stage }, e.seconds);
          break;
        case 'scene-done':
          scenesCompleted.inc();
          sceneDuration.observe(e.report.seconds);
          cloudFraction.observe(e.report.cloudFraction);
          left.delete(e.runKey);
          break;
        case 'scene-failed':
          scenesFailed.inc();
          if (e.error.code === 'DEAD_LETTER') deadLettered.inc();
          remaining.dec(left.get(e.runKey) ?? 0);
          left.delete(e.runKey);
          break;
        default:
          break;
      }
    },
  };
}
