/**
 * Every Prometheus metric name, defined once. The coordinator's and the worker's metrics modules
 * register these; the Grafana dashboard queries them (a test checks it uses no other name).
 */

/** The `app` label on every series of our processes: dashboards select on it in a shared Prometheus. */
export const APP_LABEL = 'improve-cloud-mask';
export type MetricsComponent = 'coordinator' | 'worker';

/** Default labels of a process's registry. An embedded run (coordinator and worker in one process) is a coordinator. */
export function defaultMetricLabels(component: MetricsComponent): { app: string; component: MetricsComponent } {
  return { app: APP_LABEL, component };
}

/** Coordinator-side metrics. */
export const COORDINATOR_METRICS = {
  scenesStarted: 'icm_scenes_started_total',
  scenesCompleted: 'icm_scenes_completed_total',
  scenesFailed: 'icm_scenes_failed_total',
  chipsPublished: 'icm_chips_published_total',
  chipsCompleted: 'icm_chips_completed_total',
  /** Results that arrived again for a chip already stitched (redeliveries, replays). */
  chipsRedelivered: 'icm_chips_redelivered_total',
  chipsDeadLettered: 'icm_chips_dead_lettered_total',
  /** Chips whose results came from before a coordinator restart. */
  chipsResumed: 'icm_chips_resumed_total',
  chipsInFlight: 'icm_chips_in_flight',
  /** Chips of the running scenes not yet completed (with the completion rate, the ETA). */
  chipsRemaining: 'icm_chips_remaining',
  /** Jobs waiting in the JetStream consumer (queue lag). */
  consumerPending: 'icm_consumer_pending_messages',
  sceneDuration: 'icm_scene_duration_seconds',
  /** Coordinator stages: plan, stitch, merge (what is left of it after the last chip: the dilation follows the chip rows), write. */
  stageDuration: 'icm_coordinator_stage_duration_seconds',
  pixelsProcessed: 'icm_pixels_processed_total',
  sceneCloudFraction: 'icm_scene_cloud_fraction',
  /** The archive tier (coordinator/archive-metrics.ts): scenes by archive and state. */
  archiveScenes: 'icm_archive_scenes',
  coordinatorsAlive: 'icm_coordinators_alive',
  /** Scene jobs waiting in the coordinators' consumer. */
  sceneQueueLag: 'icm_scene_queue_pending_messages',
} as const;

/** Worker-side metrics. */
export const WORKER_METRICS = {
  /**
   * Per chip stage: read, inference (both models), threshold, publish; cloud_inference and
   * shadow_inference only where the two models run as separate sessions.
   */
  chipStageDuration: 'icm_worker_chip_stage_duration_seconds',
  chipDuration: 'icm_worker_chip_duration_seconds',
  inferenceBatchSize: 'icm_worker_inference_batch_size',
  poolUtilization: 'icm_worker_pool_utilization_ratio',
  poolQueueLength: 'icm_worker_pool_queue_length',
  poolThreads: 'icm_worker_pool_threads',
  chipsProcessed: 'icm_worker_chips_processed_total',
  chipsRetried: 'icm_worker_chips_retried_total',
  errors: 'icm_worker_errors_total',
  badMessages: 'icm_worker_bad_messages_total',
  modelLoadDuration: 'icm_worker_model_load_seconds',
  /** Http attempts of the chip threads by outcome: ok, retry (failed, tried again), error (given up). */
  httpRequests: 'icm_worker_http_requests_total',
  /** Http attempts that failed and were tried again (the `retry` outcome above, on its own). */
  httpRetries: 'icm_worker_http_retries_total',
  httpBytes: 'icm_worker_http_received_bytes_total',
  /** Compressed source tiles decoded (with job affinity, about one per tile and worker). */
  tileDecodes: 'icm_worker_tile_decodes_total',
} as const;

export const CHIP_STAGES = ['read', 'inference', 'cloud_inference', 'shadow_inference', 'threshold', 'publish'] as const;
export const COORDINATOR_STAGES = ['plan', 'stitch', 'merge', 'write'] as const;
