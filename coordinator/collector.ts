/**
 * The outcome side of a scene run: stitches results as they arrive, frees their flow slots,
 * turns a dead-lettered job into the scene's failure, and resolves when every chip is in.
 */
import { CloudMaskError } from '../shared/errors.ts';
import type { TileFailure, TileOutcome } from '../shared/messages.ts';
import { chipAt, type SceneLayout } from '../shared/tiling.ts';
import type { FlowGate } from './flow.ts';
import type { Stitcher } from './stitch.ts';

export interface CollectorHooks {
  /** After every result: `duplicate` when the chip was already stitched, `replayed` during resume. */
  onChip(chipIndex: number, pixels: number, duplicate: boolean, replayed: boolean): void;
}

export class OutcomeCollector {
  /** Set while the transport replays outcomes retained from before a restart. */
  replaying = true;
  stitchSeconds = 0;
  private failure: CloudMaskError | null = null;
  private readonly done: Promise<void>;
  private resolve!: () => void;
  private reject!: (e: CloudMaskError) => void;

  constructor(
    private readonly input: string,
    private readonly layout: SceneLayout,
    private readonly stitcher: Stitcher,
    private readonly gates: FlowGate[],
    private readonly hooks: CollectorHooks,
  ) {
    this.done = new Promise<void>((resolve, reject) => ((this.resolve = resolve), (this.reject = reject)));
    this.done.catch(() => {});
  }

  get failed(): boolean {
    return this.failure !== null;
  }

  /** Resolves when every chip is stitched; rejects with the first dead-lettered job's reason. */
  wait(): Promise<void> {
    return this.stitcher.complete ? Promise.resolve() : this.done;
  }

  readonly onOutcome = (o: TileOutcome): void => {
    if (this.failure) return;
    if (o.type === 'tile-failure') return this.fail(o);
    const t = performance.now();
    const fresh = this.stitcher.add(o);
    this.stitchSeconds += (performance.now() - t) / 1000;
    if (fresh) for (const g of this.gates) g.release();
    this.hooks.onChip(o.chipIndex, o.write.width * o.write.height, !fresh, this.replaying);
    if (this.stitcher.complete) this.resolve();
  };

  private fail(o: TileFailure): void {
    // A job's chips are one row's, listed in publication order (right to left on odd rows): name them left to right.
    const chips = [...o.chips].sort((a, b) => a - b);
    const chip = chipAt(this.layout, chips[0] ?? o.chipIndex);
    const which = chips.length > 1 ? `chips ${chips.join(', ')} (row ${chip.row}, from col ${chip.col})` : `chip ${o.chipIndex} (row ${chip.row}, col ${chip.col})`;
    this.failure = new CloudMaskError('DEAD_LETTER', `${this.input}: ${which} failed after ${o.deliveries} ${o.deliveries === 1 ? 'delivery' : 'deliveries'} on ${o.worker}: ${o.error.code}: ${o.error.message}`);
    // Wake the publisher if it waits for a slot: it sees the failure and stops.
    for (const g of this.gates) g.wakeAll();
    this.reject(this.failure);
  }
}
