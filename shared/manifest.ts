/**
 * Model manifests: what a model file expects and produces, declared beside it so the
 * coordinator (tile planning) and the worker (inference) read the same facts.
 *
 * Pure: no file or onnxruntime access here; `worker/models.ts` does the I/O.
 */
import { CloudMaskError } from './errors.ts';

export type ModelRole = 'cloud' | 'shadow';
/**
 * How the output becomes a probability: softmax over 2 channels, taking channel 1; sigmoid of 1
 * channel; or 'probability' when the graph's 1 output channel already is one (its own Sigmoid,
 * which onnxruntime computes several times faster than a JavaScript loop).
 */
export type Activation = 'softmax-channel-1' | 'sigmoid' | 'probability';

export interface ModelManifest {
  /** File name inside the models directory (no path). */
  file: string;
  role: ModelRole;
  /** 'cheaplab' | 'fpn-resnet18' | ... (informational). */
  architecture: string;
  /** Indices into the 12-band FarmVibes order (B01,B02,B03,B04,B05,B06,B07,B08,B8A,B09,B11,B12) the model reads. */
  bandsUsed: number[];
  /** Factor applied to raw DN before the model: 1 for cloud models (raw DN), 1e-4 for shadow (reflectance). */
  inputScale: number;
  /** How logits become a probability. */
  activation: Activation;
  /** Output channels: 2 with softmax-channel-1, 1 with sigmoid or probability. */
  outputChannels: 1 | 2;
  input: {
    /** [N, 12, H, W] when the graph bakes in its size, else null (fully convolutional). */
    fixedShape: [number, number, number, number] | null;
    /** H and W must be multiples of this (1 = any size). */
    sizeMultiple: number;
    /** Largest batch the model accepts, null = any. */
    maxBatch: number | null;
  };
  /**
   * Receptive-field radius in pixels: the output at a pixel depends only on the input within this
   * many pixels of it (padding beyond the tensor's edge included). The 512/384 tiling leaves about
   * 64 around each chip's write window; where the margin fits, the worker runs the models over the
   * write window plus this margin only (see pairDomain). Must not be understated: a model that
   * looks further would give other values than on the whole chip.
   */
  overlapPx: number;
  /** Where the file comes from and how it was made. */
  provenance: string;
  metrics?: Record<string, unknown>;
  /** sha256 (hex) of the .onnx file, checked on load when present. */
  sha256?: string | null;
  note?: string;
}

/** Number of bands in the FarmVibes input order. */
export const INPUT_BANDS = 12;
/** The FarmVibes band order of the model input. */
export const BAND_ORDER = ['B01', 'B02', 'B03', 'B04', 'B05', 'B06', 'B07', 'B08', 'B8A', 'B09', 'B11', 'B12'] as const;

export const DEFAULT_CLOUD_MODEL = 'icm-cloud-cheaplab.onnx';
export const DEFAULT_SHADOW_MODEL = 'icm-shadow-cheaplab.onnx';

const ALL_BANDS = Array.from({ length: INPUT_BANDS }, (_, i) => i);
const FARMVIBES = 'FarmVibes.AI improve_cloud_mask model (weights not shipped here; pass --models-dir or set ICM_MODELS_DIR)';

function fpnCloud(file: string): ModelManifest {
  return {
    file, role: 'cloud', architecture: 'fpn-resnet18', bandsUsed: ALL_BANDS, inputScale: 1,
    activation: 'softmax-channel-1', outputChannels: 2,
    input: { fixedShape: [1, INPUT_BANDS, 512, 512], sizeMultiple: 32, maxBatch: 1 },
    overlapPx: 64, provenance: FARMVIBES, sha256: null,
    note: 'about 57 MB; the graph very probably bakes in 1x12x512x512',
  };
}

function cheapLabCloud(file: string): ModelManifest {
  return {
    file, role: 'cloud', architecture: 'cheaplab', bandsUsed: ALL_BANDS, inputScale: 1,
    activation: 'softmax-channel-1', outputChannels: 2,
    // FarmVibes runs batch 1; maxBatch 1 also accepts an export whose batch dim is fixed at 1.
    input: { fixedShape: null, sizeMultiple: 1, maxBatch: 1 },
    overlapPx: 0, provenance: FARMVIBES, sha256: null,
    note: 'about 26-29 KB; 1x1 convolutions over band-ratio indices, any size',
  };
}

/** Manifests for FarmVibes' own model files, used when no `<name>.json` sits beside the file. */
export const BUILTIN_MANIFESTS: Record<string, ModelManifest> = {
  'cloud_model1_cpu.onnx': fpnCloud('cloud_model1_cpu.onnx'),
  'cloud_model2_cpu.onnx': fpnCloud('cloud_model2_cpu.onnx'),
  'cloud_model3_cpu.onnx': cheapLabCloud('cloud_model3_cpu.onnx'),
  'cloud_model4_cpu.onnx': cheapLabCloud('cloud_model4_cpu.onnx'),
  'cloud_model5_cpu.onnx': cheapLabCloud('cloud_model5_cpu.onnx'),
  'shadow.onnx': {
    file: 'shadow.onnx', role: 'shadow', architecture: 'fpn-resnet18', bandsUsed: ALL_BANDS, inputScale: 1e-4,
    activation: 'sigmoid', outputChannels: 1,
    input: { fixedShape: null, sizeMultiple: 32, maxBatch: 1 },
    overlapPx: 64, provenance: FARMVIBES, sha256: null,
    note: 'about 52 MB; H and W probably must be multiples of 32',
  },
};

// ---------------------------------------------------------------------------------------------
// Validation

function fail(where: string, field: string, what: string): never {
  throw new CloudMaskError('BAD_MODEL', `${where}: manifest.${field} must be ${what}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isPositiveInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v > 0;
}

function checkBands(v: unknown, where: string): number[] {
  const ok = Array.isArray(v) && v.length > 0 &&
    v.every((b) => typeof b === 'number' && Number.isInteger(b) && b >= 0 && b < INPUT_BANDS) &&
    new Set(v).size === v.length;
  if (!ok) fail(where, 'bandsUsed', `a non-empty list of distinct band indices 0..${INPUT_BANDS - 1}`);
  return [...(v as number[])];
}

function checkInput(v: unknown, where: string): ModelManifest['input'] {
  if (!isObject(v)) fail(where, 'input', 'an object { fixedShape, sizeMultiple, maxBatch }');
  const { fixedShape, sizeMultiple, maxBatch } = v;
  if (fixedShape !== null) {
    const ok = Array.isArray(fixedShape) && fixedShape.length === 4 && fixedShape.every(isPositiveInt) &&
      fixedShape[1] === INPUT_BANDS;
    if (!ok) fail(where, 'input.fixedShape', `null or [N, ${INPUT_BANDS}, H, W] of positive integers`);
  }
  if (!isPositiveInt(sizeMultiple)) fail(where, 'input.sizeMultiple', 'a positive integer');
  if (maxBatch !== null && !isPositiveInt(maxBatch)) fail(where, 'input.maxBatch', 'null or a positive integer');
  const shape = fixedShape as [number, number, number, number] | null;
  if (shape && maxBatch !== null && maxBatch !== shape[0]) {
    fail(where, 'input.maxBatch', `equal to input.fixedShape[0] (${shape[0]}) for a fixed-shape model`);
  }
  return { fixedShape: shape ? [...shape] : null, sizeMultiple, maxBatch: shape ? shape[0] : (maxBatch as number | null) };
}

/** Checks an untrusted value (parsed JSON) and returns it as a manifest; throws BAD_MODEL naming the bad field. */
export function validateManifest(value: unknown, where: string): ModelManifest {
  if (!isObject(value)) throw new CloudMaskError('BAD_MODEL', `${where}: manifest must be a JSON object`);
  const v = value;
  if (typeof v.file !== 'string' || v.file === '' || /[\\/]/.test(v.file)) fail(where, 'file', 'a file name without a path');
  if (v.role !== 'cloud' && v.role !== 'shadow') fail(where, 'role', "'cloud' or 'shadow'");
  if (typeof v.architecture !== 'string' || v.architecture === '') fail(where, 'architecture', 'a non-empty string');
  const bandsUsed = checkBands(v.bandsUsed, where);
  if (typeof v.inputScale !== 'number' || !Number.isFinite(v.inputScale) || v.inputScale <= 0) {
    fail(where, 'inputScale', 'a positive number (1 for raw DN, 1e-4 for reflectance)');
  }
  if (v.activation !== 'softmax-channel-1' && v.activation !== 'sigmoid' && v.activation !== 'probability') {
    fail(where, 'activation', "'softmax-channel-1', 'sigmoid' or 'probability'");
  }
  const channels = v.activation === 'softmax-channel-1' ? 2 : 1;
  if (v.outputChannels !== channels) fail(where, 'outputChannels', `${channels} with activation '${v.activation}'`);
  const input = checkInput(v.input, where);
  if (typeof v.overlapPx !== 'number' || !Number.isInteger(v.overlapPx) || v.overlapPx < 0) fail(where, 'overlapPx', 'a non-negative integer');
  if (typeof v.provenance !== 'string') fail(where, 'provenance', 'a string');
  if (v.metrics !== undefined && !isObject(v.metrics)) fail(where, 'metrics', 'an object when present');
  if (v.sha256 !== undefined && v.sha256 !== null && (typeof v.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(v.sha256))) {
    fail(where, 'sha256', 'null or 64 lowercase hex digits');
  }
  if (v.note !== undefined && typeof v.note !== 'string') fail(where, 'note', 'a string when present');
  const out: ModelManifest = {
    file: v.file, role: v.role, architecture: v.architecture, bandsUsed, inputScale: v.inputScale as number,
    activation: v.activation, outputChannels: channels, input, overlapPx: v.overlapPx, provenance: v.provenance,
  };
  if (v.metrics !== undefined) out.metrics = v.metrics as Record<string, unknown>;
  if (v.sha256 !== undefined) out.sha256 = v.sha256 as string | null;
  if (v.note !== undefined) out.note = v.note as string;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Inference domain

/**
 * How the pair may be run: over each chip's write window plus `margin` (the larger of the two
 * manifests' overlapPx), or over whole chips only, and why. A fixed input shape bakes in the
 * chip's size; a size multiple above 1 means strided layers whose output at a pixel depends on
 * where the pixel sits in the tensor: neither is translation-invariant, so both keep FarmVibes'
 * whole chips. maxBatch does not matter: every run is one image.
 */
export type PairDomain = { kind: 'window'; margin: number } | { kind: 'per-chip'; reason: string };

export function pairDomain(cloud: ModelManifest, shadow: ModelManifest): PairDomain {
  for (const m of [cloud, shadow]) {
    if (m.input.fixedShape) return { kind: 'per-chip', reason: `${m.file} has a fixed input shape` };
    if (m.input.sizeMultiple !== 1) return { kind: 'per-chip', reason: `${m.file} needs sizes that are multiples of ${m.input.sizeMultiple}` };
  }
  return { kind: 'window', margin: Math.max(cloud.overlapPx, shadow.overlapPx) };
}

// ---------------------------------------------------------------------------------------------
// Model graph shapes vs manifest

type Dims = readonly (number | string)[];

function fmt(dims: Dims): string {
  return `[${dims.join(',')}]`;
}

function badShape(file: string, what: string): never {
  throw new CloudMaskError('BAD_MODEL', `${file}: ${what}; its manifest does not describe this file (fix or remove ${file}.json)`);
}

/**
 * Compares a model's declared input/output dimensions (numbers, or strings for symbolic dims)
 * with its manifest. An empty dims list means the graph declares no shape and is not checked.
 */
export function checkIoShapes(manifest: ModelManifest, inputDims: Dims, outputDims: Dims, file: string): void {
  if (inputDims.length > 0) {
    if (inputDims.length !== 4) badShape(file, `input has shape ${fmt(inputDims)}, expected 4 dims [N,${INPUT_BANDS},H,W]`);
    const ch = inputDims[1];
    if (typeof ch === 'number' && ch !== INPUT_BANDS) badShape(file, `input has ${ch} channels ${fmt(inputDims)}, expected ${INPUT_BANDS}`);
    const fixed = manifest.input.fixedShape;
    if (fixed) {
      for (let i = 0; i < 4; i++) {
        const d = inputDims[i];
        if (typeof d === 'number' && d !== fixed[i]) badShape(file, `input shape ${fmt(inputDims)} differs from manifest fixedShape ${fmt(fixed)}`);
      }
    } else {
      const [n, , h, w] = inputDims;
      if (typeof h === 'number' || typeof w === 'number') {
        badShape(file, `input shape ${fmt(inputDims)} has a fixed size but the manifest says any size (fixedShape null)`);
      }
      if (typeof n === 'number' && (manifest.input.maxBatch === null || n < manifest.input.maxBatch)) {
        badShape(file, `input batch is fixed at ${n} but manifest maxBatch is ${manifest.input.maxBatch ?? 'any'}`);
      }
    }
  }
  if (outputDims.length > 0) {
    if (outputDims.length !== 4) badShape(file, `output has shape ${fmt(outputDims)}, expected 4 dims [N,C,H,W]`);
    const c = outputDims[1];
    if (typeof c === 'number' && c !== manifest.outputChannels) {
      badShape(file, `output has ${c} channels ${fmt(outputDims)}, manifest says ${manifest.outputChannels} (${manifest.activation})`);
    }
  }
}
