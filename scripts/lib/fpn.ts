/**
 * Benchmark stand-ins for FarmVibes' FPN models (cloud_model1/2_cpu.onnx, shadow.onnx), whose
 * weights are not available: the same architecture class (ResNet-18 encoder with batch norm
 * folded into the convolutions, FPN decoder as in segmentation_models_pytorch, without its
 * GroupNorm) with RANDOM weights. Their outputs mean nothing; they exist so benchmarks and tests
 * pay the real compute and memory cost of a 13M-parameter model.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ModelManifest, type ModelRole, validateManifest } from '../../shared/manifest.ts';
import { attr, encodeModel, GraphBuilder, type AttrValue } from './onnx-writer.ts';
import { mulberry32 } from './train-mlp.ts';

/** Bump when the generated graph or weights change, so cached files are regenerated. */
const GENERATOR = 'scripts/lib/fpn.ts v1, seed 7';
const SEED = 7;

export const FPN_FILES: Record<ModelRole, string> = {
  cloud: 'bench-fpn-resnet18-cloud.onnx',
  shadow: 'bench-fpn-resnet18-shadow.onnx',
};

/** `<repo>/.cache/models/` (gitignored). */
export function defaultFpnCacheDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '.cache', 'models');
}

class FpnBuilder {
  readonly g = new GraphBuilder();
  private rnd: () => number;
  params = 0;

  constructor(seed: number) {
    this.rnd = mulberry32(seed);
  }

  /** Conv + bias (batch norm folded in), He-uniform weights scaled by `gain`, optional ReLU. */
  conv(x: string, cin: number, cout: number, k: number, stride: number, relu: boolean, gain = 1): string {
    const n = cout * cin * k * k;
    const w = new Float32Array(n);
    const a = gain * Math.sqrt(6 / (cin * k * k));
    for (let i = 0; i < n; i++) w[i] = (this.rnd() * 2 - 1) * a;
    const b = new Float32Array(cout);
    for (let i = 0; i < cout; i++) b[i] = (this.rnd() * 2 - 1) * 0.01;
    this.params += n + cout;
    const name = this.g.fresh('conv');
    const pad = Math.floor(k / 2);
    const out = this.g.op('Conv', [x, this.g.floatInit(`${name}_w`, [cout, cin, k, k], w), this.g.floatInit(`${name}_b`, [cout], b)], {
      kernel_shape: attr.ints([k, k]), strides: attr.ints([stride, stride]), pads: attr.ints([pad, pad, pad, pad]),
    });
    return relu ? this.g.op('Relu', [out]) : out;
  }

  upsample(x: string, factor: number, mode: 'nearest' | 'linear'): string {
    const scales = this.g.floatInit(this.g.fresh('scales'), [4], [1, 1, factor, factor]);
    const attrs: Record<string, AttrValue> = mode === 'nearest'
      ? { mode: attr.string('nearest'), coordinate_transformation_mode: attr.string('asymmetric'), nearest_mode: attr.string('floor') }
      : { mode: attr.string('linear'), coordinate_transformation_mode: attr.string('pytorch_half_pixel') };
    return this.g.op('Resize', [x, '', scales], attrs);
  }

  /** ResNet BasicBlock: relu(conv(relu(conv(x))) + shortcut). */
  basicBlock(x: string, cin: number, cout: number, stride: number): string {
    const y = this.conv(this.conv(x, cin, cout, 3, stride, true), cout, cout, 3, 1, false, 0.5);
    const shortcut = stride !== 1 || cin !== cout ? this.conv(x, cin, cout, 1, stride, false) : x;
    return this.g.op('Relu', [this.g.op('Add', [y, shortcut])]);
  }
}

/** Builds the graph: input "input" [N,12,H,W] -> "logits" [N,classes,H,W]. */
function buildFpn(classes: 1 | 2, inputDims: (number | string)[], seed: number, doc: string): { bytes: Uint8Array; params: number } {
  const b = new FpnBuilder(seed);
  const g = b.g;
  let x = b.conv('input', 12, 64, 7, 2, true);
  x = g.op('MaxPool', [x], { kernel_shape: attr.ints([3, 3]), strides: attr.ints([2, 2]), pads: attr.ints([1, 1, 1, 1]) });
  const features: string[] = [];
  let cin = 64;
  for (const [cout, stride] of [[64, 1], [128, 2], [256, 2], [512, 2]] as const) {
    x = b.basicBlock(x, cin, cout, stride);
    x = b.basicBlock(x, cout, cout, 1);
    features.push(x); // strides 4, 8, 16, 32
    cin = cout;
  }
  const [c2, c3, c4, c5] = features as [string, string, string, string];
  const p5 = b.conv(c5, 512, 256, 1, 1, false);
  const p4 = g.op('Add', [b.upsample(p5, 2, 'nearest'), b.conv(c4, 256, 256, 1, 1, false)]);
  const p3 = g.op('Add', [b.upsample(p4, 2, 'nearest'), b.conv(c3, 128, 256, 1, 1, false)]);
  const p2 = g.op('Add', [b.upsample(p3, 2, 'nearest'), b.conv(c2, 64, 256, 1, 1, false)]);
  // Segmentation blocks bring every level to stride 4 with 128 channels, then they are summed.
  const seg = ([[p5, 3], [p4, 2], [p3, 1], [p2, 0]] as const).map(([p, ups]) => {
    let y = b.conv(p, 256, 128, 3, 1, true);
    for (let i = 0; i < ups; i++) {
      y = b.upsample(y, 2, 'linear');
      if (i < ups - 1) y = b.conv(y, 128, 128, 3, 1, true);
    }
    return y;
  });
  const merged = seg.slice(1).reduce((acc, y) => g.op('Add', [acc, y]), seg[0]!);
  const head = b.conv(merged, 128, classes, 3, 1, false);
  g.op('Resize', [head, '', g.floatInit('head_scales', [4], [1, 1, 4, 4])], {
    mode: attr.string('linear'), coordinate_transformation_mode: attr.string('pytorch_half_pixel'),
  }, 'logits');
  const outDims = [inputDims[0]!, classes, inputDims[2]!, inputDims[3]!];
  const graph = g.build('fpn_resnet18_random', [{ name: 'input', dims: inputDims }], [{ name: 'logits', dims: outDims }]);
  return { bytes: encodeModel({ graph, opset: 13, docString: doc }), params: b.params };
}

const NOTE = 'RANDOM WEIGHTS: outputs mean nothing. A benchmark stand-in with the compute and memory cost of ' +
  "FarmVibes' FPN/ResNet-18 models (GroupNorm of the decoder left out). Never use it to mask real data.";

function manifestFor(role: ModelRole, sha256: string, params: number): ModelManifest {
  const cloud = role === 'cloud';
  return {
    file: FPN_FILES[role], role, architecture: 'fpn-resnet18',
    bandsUsed: Array.from({ length: 12 }, (_, i) => i),
    inputScale: cloud ? 1 : 1e-4,
    activation: cloud ? 'softmax-channel-1' : 'sigmoid',
    outputChannels: cloud ? 2 : 1,
    input: cloud ? { fixedShape: [1, 12, 512, 512], sizeMultiple: 32, maxBatch: 1 } : { fixedShape: null, sizeMultiple: 32, maxBatch: null },
    overlapPx: 64,
    provenance: `${GENERATOR}; ${params} parameters`,
    sha256,
    note: `${NOTE} ${cloud ? 'Fixed input 1x12x512x512 like cloud_model1/2_cpu.onnx.' : 'Dynamic N,H,W (multiples of 32) like shadow.onnx.'}`,
  };
}

async function upToDate(file: string, role: ModelRole): Promise<boolean> {
  try {
    const manifest = validateManifest(JSON.parse(await readFile(`${file}.json`, 'utf8')), `${file}.json`);
    if (!manifest.provenance.startsWith(GENERATOR) || !manifest.sha256 || manifest.role !== role) return false;
    return createHash('sha256').update(await readFile(file)).digest('hex') === manifest.sha256;
  } catch {
    return false;
  }
}

async function writeAtomic(file: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, file);
}

async function generate(dir: string, role: ModelRole): Promise<string> {
  const file = path.join(dir, FPN_FILES[role]);
  if (await upToDate(file, role)) return file;
  const dims = role === 'cloud' ? [1, 12, 512, 512] : ['N', 12, 'H', 'W'];
  const { bytes, params } = buildFpn(role === 'cloud' ? 2 : 1, dims, role === 'cloud' ? SEED : SEED + 1, `${NOTE} (${GENERATOR})`);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  await writeAtomic(file, bytes);
  await writeAtomic(`${file}.json`, `${JSON.stringify(manifestFor(role, sha256, params), null, 2)}\n`);
  return file;
}

/**
 * Makes sure both benchmark models exist in `cacheDir` (generating them, deterministically, when
 * missing or stale) and returns their paths. Use the directory as --models-dir.
 */
export async function ensureFpnModels(cacheDir = defaultFpnCacheDir()): Promise<{ cloud: string; shadow: string }> {
  await mkdir(cacheDir, { recursive: true });
  return { cloud: await generate(cacheDir, 'cloud'), shadow: await generate(cacheDir, 'shadow') };
}
