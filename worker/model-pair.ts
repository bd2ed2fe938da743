/**
 * Model-paired chip threads. onnxruntime keeps a memory arena per session (about 143 MB for a
 * default-model session at 512x512, 200 MB for an FPN one) and each thread needs its own
 * sessions, so a 2-thread worker holding both models in both threads carries four arenas (and
 * two copies of each model's weights). Paired, one thread of a pair holds only the cloud model
 * and the other only the shadow model: the thread that owns a job prepares each chip's input in
 * shared memory, runs its own model on it and has its peer run the other model at the same
 * time. Each thread still reads, prepares and packs its own jobs; model runs from both owners
 * queue in the thread holding the model, one at a time.
 *
 * Threads find each other through a BroadcastChannel and claim their index from a shared
 * counter. A peer that does not answer in time (a crashed or stuck thread) is replaced by running
 * the model here, so a job never waits forever.
 */
import { BroadcastChannel } from 'node:worker_threads';
import { fromErrorData, toErrorData, type ErrorData } from '../shared/errors.ts';
import type { ModelRole } from '../shared/manifest.ts';
import { predictProbabilities, type LoadedModel } from './models.ts';

/** What the pool shares with every thread to pair them. */
export interface PairingHandle {
  /** Int32 counter: each starting thread takes the next index. */
  counter: SharedArrayBuffer;
  threads: number;
  /** BroadcastChannel name, unique per pool. */
  channel: string;
}

/** A model as a job names it. */
export interface ModelRef {
  name: string;
  role: ModelRole;
  modelsDir: string;
  intraOpThreads: number;
}

export type ModelLoader = (ref: ModelRef) => Promise<LoadedModel>;

interface InferRequest {
  kind: 'infer';
  to: number;
  from: number;
  id: number;
  model: ModelRef;
  dn: SharedArrayBuffer;
  out: SharedArrayBuffer;
  h: number;
  w: number;
}

type InferReply = { kind: 'done'; to: number; from: number; id: number; ok: true; runMs: number; loadMs: number } | { kind: 'done'; to: number; from: number; id: number; ok: false; error: ErrorData };

/** Time a peer gets to answer before this thread runs the model itself. */
const PEER_TIMEOUT_MS = 120_000;

/** One chip's buffers: model input and both probability outputs. */
export interface ChipBuffers {
  dn: Float32Array;
  cloud: Float32Array;
  shadow: Float32Array;
}

export interface BothResult {
  /** The probabilities (usually the chip buffers' arrays; fresh ones after a peer timed out). */
  cloud: Float32Array;
  shadow: Float32Array;
  cloudMs: number;
  shadowMs: number;
  /** Model loading on first use, in either thread. */
  loadMs: number;
}

export class ModelRunner {
  /** The model role this thread runs, or 'both' when it is not paired. */
  readonly role: ModelRole | 'both';
  private readonly index: number;
  private readonly peer: number | null;
  private readonly channel: BroadcastChannel | null;
  private readonly pending = new Map<number, { resolve: (r: InferReply) => void; timer: NodeJS.Timeout }>();
  private nextId = 1;
  /** Model runs waiting in this thread: the peer's first (its thread waits on them), then ours. */
  private readonly waiting: { peer: (() => Promise<void>)[]; own: (() => Promise<void>)[] } = { peer: [], own: [] };
  private running = false;
  private readonly scratch = new Map<string, Float32Array>();
  private sets: (ChipBuffers | null)[] = [];

  constructor(
    private readonly load: ModelLoader,
    pairing: PairingHandle | null,
  ) {
    const paired = pairing ? pairing.threads - (pairing.threads % 2) : 0;
    this.index = pairing ? Atomics.add(new Int32Array(pairing.counter), 0, 1) : 0;
    // A thread beyond the pairs (odd count, or a replacement after a crash) runs both models.
    if (pairing && this.index < paired) {
      this.role = this.index % 2 === 0 ? 'cloud' : 'shadow';
      this.peer = this.index ^ 1;
      this.channel = new BroadcastChannel(pairing.channel);
      this.channel.onmessage = (event: unknown) => this.onMessage((event as { data: InferRequest | InferReply }).data);
    } else {
      this.role = 'both';
      this.peer = null;
      this.channel = null;
    }
  }

  get paired(): boolean {
    return this.peer !== null;
  }

  /**
   * Buffer set `slot` for one chip: model input `dn` (12 x count) and both probability outputs,
   * in shared memory when paired (the peer reads and writes them). A job keeps a few chips in
   * flight, each in its own slot.
   */
  chipBuffers(count: number, slot = 0): ChipBuffers {
    const s = this.sets[slot];
    if (s && s.dn.length === 12 * count) return s;
    const make = (n: number): Float32Array => (this.paired ? new Float32Array(new SharedArrayBuffer(4 * n)) : new Float32Array(n));
    const set = { dn: make(12 * count), cloud: make(count), shadow: make(count) };
    this.sets[slot] = set;
    return set;
  }

  /** Both models on one chip whose input is in `bufs.dn` (from chipBuffers()). */
  async predictBoth(bufs: ChipBuffers, cloud: ModelRef, shadow: ModelRef, h: number, w: number): Promise<BothResult> {
    if (!this.paired) {
      const c = await this.runLocal(cloud, bufs.dn, bufs.cloud, h, w, false);
      // The shadow model runs last: its input scaling may overwrite dn in place.
      const s = await this.runLocal(shadow, bufs.dn, bufs.shadow, h, w, true);
      return { cloud: bufs.cloud, shadow: bufs.shadow, cloudMs: c.runMs, shadowMs: s.runMs, loadMs: c.loadMs + s.loadMs };
    }
    const mine = this.role === 'cloud' ? cloud : shadow;
    const theirs = this.role === 'cloud' ? shadow : cloud;
    const [own, other] = await Promise.all([
      this.runLocal(mine, bufs.dn, this.role === 'cloud' ? bufs.cloud : bufs.shadow, h, w, false),
      this.runOnPeer(theirs, bufs, h, w),
    ]);
    const c = this.role === 'cloud' ? own : other;
    const s = this.role === 'cloud' ? other : own;
    return {
      cloud: this.role === 'cloud' ? bufs.cloud : other.out,
      shadow: this.role === 'shadow' ? bufs.shadow : other.out,
      cloudMs: c.runMs,
      shadowMs: s.runMs,
      loadMs: c.loadMs + s.loadMs,
    };
  }

  close(): void {
    this.channel?.close();
    for (const p of this.pending.values()) clearTimeout(p.timer);
  }

  /**
   * Runs `ref` here, one model run at a time; runs for the peer go before our own. `inPlace`:
   * input scaling may overwrite dn.
   */
  private runLocal(ref: ModelRef, dn: Float32Array, out: Float32Array, h: number, w: number, inPlace: boolean, forPeer = false): Promise<{ runMs: number; loadMs: number }> {
    const run = async (): Promise<{ runMs: number; loadMs: number }> => {
      const t0 = performance.now();
      const model = await this.load(ref);
      const t1 = performance.now();
      // onnxruntime refuses tensors over shared memory: a shared input is copied (or scaled) into
      // a private buffer first.
      const shared = dn.buffer instanceof SharedArrayBuffer;
      let source = dn;
      if (shared && model.manifest.inputScale === 1) {
        source = this.floats('input', dn.length);
        source.set(dn);
      }
      const input = model.manifest.inputScale === 1 ? undefined : inPlace && !shared ? dn : this.floats('scaled', dn.length);
      await predictProbabilities(model, source, 1, h, w, { input, out });
      return { runMs: performance.now() - t1, loadMs: t1 - t0 };
    };
    return new Promise((resolve, reject) => {
      (forPeer ? this.waiting.peer : this.waiting.own).push(() => run().then(resolve, reject));
      void this.pump();
    });
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (let next = this.waiting.peer.shift() ?? this.waiting.own.shift(); next; next = this.waiting.peer.shift() ?? this.waiting.own.shift()) await next();
    } finally {
      this.running = false;
    }
  }

  /** Runs `ref` on the peer thread; `out` is where the probabilities are. */
  private runOnPeer(ref: ModelRef, bufs: ChipBuffers, h: number, w: number): Promise<{ runMs: number; loadMs: number; out: Float32Array }> {
    const out = ref.role === 'cloud' ? bufs.cloud : bufs.shadow;
    const id = this.nextId++;
    const request: InferRequest = { kind: 'infer', to: this.peer!, from: this.index, id, model: ref, dn: bufs.dn.buffer as SharedArrayBuffer, out: out.buffer as SharedArrayBuffer, h, w };
    return new Promise<InferReply>((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve({ kind: 'done', to: this.index, from: this.peer!, id, ok: false, error: { code: 'INTERNAL', message: 'peer timeout' } });
      }, PEER_TIMEOUT_MS);
      this.pending.set(id, { resolve, timer });
      this.channel!.postMessage(request);
    }).then(async (reply) => {
      if (reply.ok) return { runMs: reply.runMs, loadMs: reply.loadMs, out };
      if (reply.error.message !== 'peer timeout') throw fromErrorData(reply.error);
      // The peer may still write into these buffers some day: never use them again (next chips
      // get fresh ones) and run the model here into a private array.
      this.sets = this.sets.map((set) => (set === bufs ? null : set));
      const own = new Float32Array(out.length);
      const r = await this.runLocal(ref, bufs.dn, own, h, w, false);
      return { ...r, out: own };
    });
  }

  private onMessage(m: InferRequest | InferReply): void {
    if (!m || m.to !== this.index) return;
    if (m.kind === 'done') {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      clearTimeout(p.timer);
      p.resolve(m);
      return;
    }
    const dn = new Float32Array(m.dn, 0, 12 * m.h * m.w);
    const out = new Float32Array(m.out, 0, m.h * m.w);
    const base = { kind: 'done' as const, to: m.from, from: this.index, id: m.id };
    this.runLocal(m.model, dn, out, m.h, m.w, false, true).then(
      (r) => this.channel?.postMessage({ ...base, ok: true, runMs: r.runMs, loadMs: r.loadMs } satisfies InferReply),
      (err: unknown) => this.channel?.postMessage({ ...base, ok: false, error: toErrorData(err) } satisfies InferReply),
    );
  }

  private floats(key: string, n: number): Float32Array {
    let b = this.scratch.get(key);
    if (!b || b.length < n) {
      b = new Float32Array(n);
      this.scratch.set(key, b);
    }
    return b.subarray(0, n);
  }
}
