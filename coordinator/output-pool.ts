/**
 * Output threads: a scene's merge and writes (coordinator/output-thread.ts) run on a Piscina
 * thread, so the coordinator's event loop keeps stitching the next scene's results and talking
 * to NATS meanwhile, and a second core can take the writes. Used where scenes follow each other
 * (batch, the coordinator service); a single `run` writes in place (a thread's start-up would
 * cost it more than it gains).
 */
import { Piscina } from 'piscina';
import type { HttpOptions } from '../raster/http.ts';
import { fromErrorData } from '../shared/errors.ts';
import type { OutputReply, OutputTask } from './output-thread.ts';
import type { OutputWriter } from './outputs.ts';

export class OutputPool {
  private readonly piscina: Piscina;

  /** `threads` output threads (default 1); `http`: headers for a quick-look's reads of remote scenes. */
  constructor(private readonly options: { threads?: number; http?: HttpOptions } = {}) {
    const threads = options.threads ?? 1;
    if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`options.threads must be a positive integer, got ${threads}`);
    this.piscina = new Piscina({
      filename: new URL('./output-thread-entry.mjs', import.meta.url).href,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: 60_000,
    });
  }

  /**
   * Writes on a thread. The stitched planes and probabilities are moved there: the stitcher is
   * unusable afterwards (a scene run writes once, at its end).
   */
  readonly write: OutputWriter = async (task, stitched, scene, params, meta) => {
    const { onStage, onNote, ...plain } = meta;
    const dilated = stitched.dilated;
    const moved: OutputTask = {
      task,
      stitched: { width: stitched.width, height: stitched.height, planes: stitched.planes, cloudProb: stitched.cloudProb, shadowProb: stitched.shadowProb, dilated },
      scene: { geo: scene.geo, metadata: scene.metadata, source: scene.source, http: this.options.http },
      params,
      meta: plain,
    };
    const transferList = [...Object.values(stitched.planes).map((p) => p.words.buffer), dilated?.mask.words.buffer, stitched.cloudProb?.buffer, stitched.shadowProb?.buffer].filter((b): b is ArrayBuffer => b instanceof ArrayBuffer);
    const reply = (await this.piscina.run(moved, { transferList })) as OutputReply;
    if (!reply.ok) throw fromErrorData(reply.error);
    for (const [stage, seconds] of reply.stages) onStage(stage, seconds);
    for (const n of reply.notes) onNote?.(n);
    return { cloudFraction: reply.cloudFraction };
  };

  /** Waits for writes in progress (a half-written output is never left: they finish), then ends the threads. */
  async close(): Promise<void> {
    await this.piscina.close();
  }
}
