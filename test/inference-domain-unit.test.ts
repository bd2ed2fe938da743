/**
 * The inference domain (shared/tiling.ts) as pure math: a chip's models may run over its write
 * window plus the receptive-field margin instead of the whole read window, and a local model
 * then gives the same value at every written pixel. Checked against a brute-force local model.
 */
import { describe, expect, test } from 'vitest';
import { paramHash } from '../coordinator/run-key.ts';
import { chipWindow, planDomain } from '../coordinator/scene-run.ts';
import { BUILTIN_MANIFESTS, pairDomain, type ModelManifest } from '../shared/manifest.ts';
import { decodeJob, encodeMessage, type TileJob } from '../shared/messages.ts';
import { DEFAULT_PARAMS, resolveParams } from '../shared/params.ts';
import { chipAt, inferenceWindow, isExactDomain, planChips, sameWindow, sceneLayout } from '../shared/tiling.ts';

type Win = { x: number; y: number; width: number; height: number };

/** A local model on integers: out = sum of weighted neighbours within `m`, PAD outside the tensor (like a conv's zero padding). */
function localModel(scene: Int32Array, sceneW: number, tensor: Win, m: number): Int32Array {
  const PAD = -7;
  const value = (x: number, y: number): number => {
    if (x < tensor.x || y < tensor.y || x >= tensor.x + tensor.width || y >= tensor.y + tensor.height) return PAD;
    return scene[y * sceneW + x]!;
  };
  const out = new Int32Array(tensor.width * tensor.height);
  for (let r = 0; r < tensor.height; r++) {
    for (let c = 0; c < tensor.width; c++) {
      let s = 0;
      for (let dy = -m; dy <= m; dy++) for (let dx = -m; dx <= m; dx++) s += (3 + dy * 5 + dx * 11) * value(tensor.x + c + dx, tensor.y + r + dy);
      out[r * tensor.width + c] = s;
    }
  }
  return out;
}

/** The model's values over `write`, computed on `tensor`. */
function written(scene: Int32Array, sceneW: number, tensor: Win, write: Win, m: number): number[] {
  const out = localModel(scene, sceneW, tensor, m);
  const vals: number[] = [];
  for (let y = write.y; y < write.y + write.height; y++) for (let x = write.x; x < write.x + write.width; x++) vals.push(out[(y - tensor.y) * tensor.width + (x - tensor.x)]!);
  return vals;
}

/** A small deterministic pseudo-random generator (tests must not depend on Math.random). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

describe('inference domain', () => {
  test('the write window grows by the margin, cut to the read window', () => {
    const read = { x: 100, y: 200, width: 512, height: 512 };
    const write = { x: 164, y: 264, width: 384, height: 384 };
    expect(inferenceWindow(read, write, 1)).toEqual({ x: 163, y: 263, width: 386, height: 386 });
    expect(inferenceWindow(read, write, 0)).toEqual(write);
    // A margin wider than the overlap keeps the read window's edges: per chip, as FarmVibes.
    expect(inferenceWindow(read, write, 64)).toEqual(read);
    expect(inferenceWindow(read, write, 200)).toEqual(read);
    // At a scene edge the write window reaches the read window's edge: the domain keeps it.
    const corner = chipAt(sceneLayout(1098, 1098), 0);
    expect(inferenceWindow(corner.read, corner.write, 1)).toEqual({ x: 0, y: 0, width: corner.write.width + 1, height: corner.write.height + 1 });
    expect(() => inferenceWindow(read, write, -1)).toThrow(/margin/);
  });

  test('full tile, margin 1: every chip runs on at most (374+2+69)^2 pixels, 55 % of the chips\' pixels', () => {
    const layout = sceneLayout(10980, 10980);
    let inferred = 0;
    for (const c of planChips(layout)) {
      const d = inferenceWindow(c.read, c.write, 1);
      expect(isExactDomain(c.read, c.write, d, 1)).toBe(true);
      inferred += d.width * d.height;
    }
    const perChip = layout.count * 512 * 512;
    expect(inferred / perChip).toBeGreaterThan(0.54);
    expect(inferred / perChip).toBeLessThan(0.56);
    // Each output pixel once, plus a 1-pixel seam per side.
    expect(inferred / (10980 * 10980)).toBeLessThan(1.011);
  });

  test('exactness: a local model gives the same written values on the domain as on the read window', () => {
    const W = 60;
    const H = 50;
    const next = rng(11);
    const scene = Int32Array.from({ length: W * H }, () => Math.floor(next() * 1000));
    // Scenes smaller than a chip (read windows past the edge are nodata in the reader) are not
    // this model's concern; chips here lie inside the scene.
    for (const m of [0, 1, 2, 4]) {
      const layout = sceneLayout(W, H, 24, 16);
      for (const c of planChips(layout)) {
        const d = inferenceWindow(c.read, c.write, m);
        expect(isExactDomain(c.read, c.write, d, m)).toBe(true);
        expect(written(scene, W, d, c.write, m)).toEqual(written(scene, W, c.read, c.write, m));
      }
    }
  });

  test('isExactDomain agrees with the brute-force model on random windows', () => {
    const W = 30;
    const H = 30;
    const next = rng(7);
    const scene = Int32Array.from({ length: W * H }, () => Math.floor(next() * 1000));
    const int = (lo: number, hi: number): number => lo + Math.floor(next() * (hi - lo + 1));
    let exact = 0;
    let inexact = 0;
    for (let k = 0; k < 400; k++) {
      const m = int(1, 3);
      const read = { x: int(0, 8), y: int(0, 8), width: int(12, 20), height: int(12, 20) };
      const write = { x: read.x + int(0, 5), y: read.y + int(0, 5), width: int(1, 6), height: int(1, 6) };
      const domain = { x: int(read.x, write.x), y: int(read.y, write.y), width: 0, height: 0 };
      domain.width = int(write.x + write.width, read.x + read.width) - domain.x;
      domain.height = int(write.y + write.height, read.y + read.height) - domain.y;
      const same = JSON.stringify(written(scene, W, domain, write, m)) === JSON.stringify(written(scene, W, read, write, m));
      const claimed = isExactDomain(read, write, domain, m);
      // Claimed exact must be exact; and with this model (every tap weighted, PAD distinct) the converse holds too.
      expect(claimed, JSON.stringify({ read, write, domain, m })).toBe(same);
      if (claimed) exact++;
      else inexact++;
    }
    expect(exact).toBeGreaterThan(20);
    expect(inexact).toBeGreaterThan(20);
  });

  test('a domain outside the read window, or not covering the write window, is refused', () => {
    const read = { x: 0, y: 0, width: 20, height: 20 };
    const write = { x: 5, y: 5, width: 10, height: 10 };
    expect(isExactDomain(read, write, { x: -1, y: 0, width: 21, height: 20 }, 1)).toBe(false);
    expect(isExactDomain(read, write, { x: 6, y: 4, width: 10, height: 12 }, 0)).toBe(false);
    expect(isExactDomain(read, write, read, 100)).toBe(true);
    expect(sameWindow(inferenceWindow(read, write, 5), read)).toBe(true);
  });
});

describe('planning the domain from the manifests', () => {
  const cheap = (file: string, overlapPx: number): ModelManifest => ({
    file, role: 'cloud', architecture: 'cheaplab', bandsUsed: [1], inputScale: 1, activation: 'softmax-channel-1', outputChannels: 2,
    input: { fixedShape: null, sizeMultiple: 1, maxBatch: 1 }, overlapPx, provenance: 'test',
  });

  test('the pair needs the larger of its two margins; fixed shapes and size multiples keep whole chips', () => {
    expect(pairDomain(cheap('a', 1), cheap('b', 3))).toEqual({ kind: 'window', margin: 3 });
    expect(pairDomain(cheap('a', 0), cheap('b', 0))).toEqual({ kind: 'window', margin: 0 });
    const fixed = { ...cheap('f', 0), input: { fixedShape: [1, 12, 512, 512] as [number, number, number, number], sizeMultiple: 1, maxBatch: 1 } };
    expect(pairDomain(fixed, cheap('b', 0))).toEqual({ kind: 'per-chip', reason: 'f has a fixed input shape' });
    const strided = { ...cheap('s', 0), input: { fixedShape: null, sizeMultiple: 32, maxBatch: null } };
    expect(pairDomain(cheap('a', 0), strided)).toMatchObject({ kind: 'per-chip', reason: expect.stringMatching(/multiples of 32/) });
    // FarmVibes' own files, by their built-in manifests: the FPN ones keep whole chips.
    expect(pairDomain(BUILTIN_MANIFESTS['cloud_model2_cpu.onnx']!, BUILTIN_MANIFESTS['shadow.onnx']!).kind).toBe('per-chip');
    expect(pairDomain(BUILTIN_MANIFESTS['cloud_model3_cpu.onnx']!, BUILTIN_MANIFESTS['shadow.onnx']!).kind).toBe('per-chip');
  });

  test('planDomain: per_chip, no manifests, a margin wider than every overlap', () => {
    const layout = sceneLayout(1098, 1098);
    const pair = { cloud: cheap('a', 1), shadow: cheap('b', 1) };
    expect(planDomain(DEFAULT_PARAMS, pair, layout)).toEqual({ margin: 1, describe: 'write windows + 1 px (9 of 9 chips)' });
    expect(planDomain({ ...DEFAULT_PARAMS, per_chip: true }, pair, layout)).toEqual({ margin: null, describe: 'whole chips (per_chip)' });
    expect(planDomain(DEFAULT_PARAMS, undefined, layout).margin).toBeNull();
    const wide = { cloud: cheap('a', 1), shadow: cheap('b', 200) };
    expect(planDomain(DEFAULT_PARAMS, wide, layout).margin).toBeNull();
    // Jobs carry an inference window only where it is smaller than the chip.
    expect(chipWindow(chipAt(layout, 4), 1).infer).toEqual(inferenceWindow(chipAt(layout, 4).read, chipAt(layout, 4).write, 1));
    expect(chipWindow(chipAt(layout, 4), 200).infer).toBeUndefined();
    expect(chipWindow(chipAt(layout, 4), null).infer).toBeUndefined();
  });

  test('per_chip is a parameter (our addition), and not part of the parameter hash: the masks are the same', () => {
    expect(DEFAULT_PARAMS.per_chip).toBe(false);
    expect(resolveParams({ per_chip: 'true' }).per_chip).toBe(true);
    expect(() => resolveParams({ per_chip: 'yes' })).toThrow(/per_chip must be true or false/);
    expect(paramHash('/x/scene', 'scl', { ...DEFAULT_PARAMS, per_chip: true })).toBe(paramHash('/x/scene', 'scl', DEFAULT_PARAMS));
    expect(paramHash('/x/scene', 'scl', { ...DEFAULT_PARAMS, cloud_thr: 0.4 })).not.toBe(paramHash('/x/scene', 'scl', DEFAULT_PARAMS));
  });

  test('jobs carry the inference window within v1, checked on arrival', () => {
    const layout = sceneLayout(1098, 1098);
    const c = chipAt(layout, 4);
    const job: TileJob = {
      type: 'tile-job', v: 1, runKey: 'k', chips: [chipWindow(c, 1)], source: { kind: 'stacked', href: '/x.tif' },
      models: { cloud: 'a', shadow: 'b' }, thresholds: { cloud: 0.3, shadow: 0.2 }, harmonize: false, withProbabilities: false,
    };
    expect(decodeJob(encodeMessage(job)).chips[0]!.infer).toEqual(job.chips[0]!.infer);
    const bad = (infer: { x: number; y: number; width: number; height: number }): TileJob => ({ ...job, chips: [{ ...job.chips[0]!, infer }] });
    expect(() => decodeJob(encodeMessage(bad({ ...c.write, x: c.write.x + 1 })))).toThrow(/inference window must lie inside the read window and hold the write window/);
    expect(() => decodeJob(encodeMessage(bad({ ...c.read, width: 513 })))).toThrow(/inference window/);
  });
});
