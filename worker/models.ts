/**
 * Model loading with checks, and inference to probabilities.
 *
 * Every way a model file can be wrong (missing, a Git LFS pointer, not ONNX, the wrong role,
 * shapes that disagree with its manifest) fails here, at load time, with a one-line BAD_MODEL
 * error that names the file and says what to do, instead of deep inside a run.
 */
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import type { InferenceSession } from 'onnxruntime-node';
import { CloudMaskError } from '../shared/errors.ts';
import { BUILTIN_MANIFESTS, checkIoShapes, INPUT_BANDS, type ModelManifest, type ModelRole, validateManifest } from '../shared/manifest.ts';
import { mergeModelPair, pairName, PairMergeError, SHARED_INPUT } from './onnx-pair.ts';

const LFS_PREFIX = 'version https://git-lfs';

function bad(message: string, cause?: unknown): CloudMaskError {
  return new CloudMaskError('BAD_MODEL', message, cause === undefined ? undefined : { cause });
}

function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0]!.trim();
}

/** The repository's `models/` directory. */
export function defaultModelsDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'models');
}

/** `modelsDir/name`, refusing names that could point outside the directory. */
export function resolveModelPath(name: string, modelsDir: string): string {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\\') || name.includes('\0') || path.isAbsolute(name)) {
    throw bad(`model name '${name}' must be a plain file name inside the models directory (no path); pass --models-dir to use another directory`);
  }
  return path.join(modelsDir, name);
}

async function readIfExists(file: string): Promise<Buffer | null> {
  try {
    return await readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw bad(`cannot read ${file}: ${firstLine(err)}`, err);
  }
}

/** The manifest for `name`: `<name>.json` beside the file, else a built-in one for FarmVibes' files. */
export async function readManifest(name: string, modelsDir: string): Promise<ModelManifest> {
  const file = resolveModelPath(name, modelsDir);
  const jsonPath = `${file}.json`;
  const text = await readIfExists(jsonPath);
  if (text !== null) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text.toString('utf8'));
    } catch (err) {
      throw bad(`${jsonPath}: not valid JSON (${firstLine(err)})`, err);
    }
    const manifest = validateManifest(parsed, jsonPath);
    if (manifest.file !== name) throw bad(`${jsonPath}: manifest.file is '${manifest.file}' but it sits beside '${name}'`);
    return manifest;
  }
  const builtin = BUILTIN_MANIFESTS[name];
  if (builtin) return structuredClone(builtin);
  throw bad(`no manifest for model ${name}: write ${jsonPath} (see docs/models.md) or use one of ${Object.keys(BUILTIN_MANIFESTS).join(', ')}`);
}

/** A model's manifest and its input and output names in its session. */
export interface ModelInfo {
  name: string;
  manifest: ModelManifest;
  inputName: string;
  outputName: string;
}

export interface LoadedModel extends ModelInfo {
  session: InferenceSession;
}

export interface LoadOptions {
  /** Threads onnxruntime may use inside one inference. Default 1 (parallelism comes from workers). */
  intraOpNumThreads?: number;
}

async function readModelBytes(file: string, name: string, modelsDir: string): Promise<Buffer> {
  try {
    const s = await stat(file);
    if (!s.isFile()) throw bad(`model ${file} is not a file`);
  } catch (err) {
    if (err instanceof CloudMaskError) throw err;
    throw bad(`model file ${name} not found in ${modelsDir}: pass --models-dir (or set ICM_MODELS_DIR) to the directory that holds it`, err);
  }
  const bytes = await readFile(file);
  if (bytes.subarray(0, LFS_PREFIX.length).toString('latin1') === LFS_PREFIX) {
    throw bad(`model ${file} is a Git LFS pointer, not the model: run \`git lfs pull\` in the repository that holds it`);
  }
  return bytes;
}

function tensorShape(meta: InferenceSession.ValueMetadata | undefined): readonly (number | string)[] {
  return meta && meta.isTensor ? meta.shape : [];
}

/** A model file read and checked against its manifest (role, checksum), not yet in a session. */
interface CheckedModel {
  name: string;
  file: string;
  bytes: Buffer;
  manifest: ModelManifest;
}

async function readCheckedModel(name: string, role: ModelRole, modelsDir: string): Promise<CheckedModel> {
  const file = resolveModelPath(name, modelsDir);
  const bytes = await readModelBytes(file, name, modelsDir);
  const manifest = await readManifest(name, modelsDir);
  if (manifest.role !== role) {
    throw bad(`model ${name} is a ${manifest.role} model (per its manifest) and cannot be used as the ${role} model`);
  }
  if (manifest.sha256) {
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== manifest.sha256) {
      throw bad(`model ${file} has sha256 ${actual.slice(0, 12)}... but its manifest expects ${manifest.sha256.slice(0, 12)}...: the file and ${name}.json do not belong together (re-fetch or regenerate the model)`);
    }
  }
  return { name, file, bytes, manifest };
}

/**
 * 'all' adds layout transforms to onnxruntime's blocked NCHWc format: worth it for 3x3
 * convolutions (FPN class), but for graphs of 1x1 convolutions the reorder nodes cost more than
 * they save (CheapLab pair, 512x512 chip, one thread: 'extended' about half the time of 'all';
 * bench/model-pair.ts measures it).
 */
const optimizationLevel = (architecture: string): 'extended' | 'all' => (architecture === 'cheaplab' ? 'extended' : 'all');

function createSession(bytes: Uint8Array, opts: LoadOptions, architecture: string): Promise<InferenceSession> {
  return ort.InferenceSession.create(bytes, {
    graphOptimizationLevel: optimizationLevel(architecture),
    intraOpNumThreads: opts.intraOpNumThreads ?? 1,
    executionMode: 'sequential',
    // The arena keeps intermediate tensors' memory between runs: without it every run maps and
    // faults in fresh pages, which doubled the default models' inference time (measured: sys
    // time as large as user time). The memory pattern is off because with it each session keeps
    // a second, larger planned block (about 240 MB instead of 143 MB per default-model session
    // at 512x512, measured); runs are one chip at a time so the arena holds one chip's tensors.
    enableCpuMemArena: true,
    enableMemPattern: false,
  });
}

/** The model's input and output in `session` (the first ones whose names `mine` accepts), shapes checked against its manifest. */
function modelIo(session: InferenceSession, m: CheckedModel, mine: (name: string) => boolean = () => true): ModelInfo {
  const input = session.inputNames.findIndex(mine);
  const output = session.outputNames.findIndex(mine);
  if (input < 0 || output < 0) throw bad(`model ${m.file} has no input or no output`);
  checkIoShapes(m.manifest, tensorShape(session.inputMetadata[input]), tensorShape(session.outputMetadata[output]), m.name);
  return { name: m.name, manifest: m.manifest, inputName: session.inputNames[input]!, outputName: session.outputNames[output]! };
}

/** Loads `name` from `modelsDir` for `role`, checking file, manifest, role and shapes. */
export async function loadModel(name: string, role: ModelRole, modelsDir: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  return loadChecked(await readCheckedModel(name, role, modelsDir), opts);
}

/** A checked model in its own session, its shapes checked. */
async function loadChecked(m: CheckedModel, opts: LoadOptions): Promise<LoadedModel> {
  let session: InferenceSession;
  try {
    session = await createSession(m.bytes, opts, m.manifest.architecture);
  } catch (err) {
    throw bad(`model ${m.file} is not a loadable ONNX model (onnxruntime: ${firstLine(err)}); check the file or pass --models-dir`, err);
  }
  try {
    return { ...modelIo(session, m), session };
  } catch (err) {
    await session.release();
    throw err;
  }
}

/**
 * The cloud and the shadow model of a chip thread: one session running both (see onnx-pair.ts),
 * or two sessions when the models cannot be merged or merging does not pay.
 */
export type ModelPair =
  | { kind: 'merged'; session: InferenceSession; cloud: ModelInfo; shadow: ModelInfo }
  | { kind: 'separate'; cloud: LoadedModel; shadow: LoadedModel; reason: string };

/** Manifests' architecture for which one merged session is measured to take less memory than two. */
const MERGED_ARCHITECTURE = 'cheaplab';

/** Loads both models with the checks of loadModel, merged into one session where that pays. */
export async function loadModelPair(cloudName: string, shadowName: string, modelsDir: string, opts: LoadOptions = {}): Promise<ModelPair> {
  const [c, s] = await Promise.all([readCheckedModel(cloudName, 'cloud', modelsDir), readCheckedModel(shadowName, 'shadow', modelsDir)]);
  const merged = await mergedSession(c, s, opts);
  if (typeof merged !== 'string') return merged;
  // Each model on its own: a broken model gets its own BAD_MODEL error there.
  const [cloud, shadow] = await Promise.all([loadChecked(c, opts), loadChecked(s, opts)]);
  return { kind: 'separate', cloud, shadow, reason: merged };
}

/** The two models in one session, or why not. */
async function mergedSession(c: CheckedModel, s: CheckedModel, opts: LoadOptions): Promise<ModelPair | string> {
  if (c.manifest.architecture !== MERGED_ARCHITECTURE || s.manifest.architecture !== MERGED_ARCHITECTURE) {
    return 'merging pays off for CheapLab-class models only (measured: one session per thread saves about 110 MB with them, but costs about 350 MB with FPN-class ones)';
  }
  let session: InferenceSession;
  // Models that scale the DN alike get the same tensor: one graph input, shared feature nodes.
  const shareInput = c.manifest.inputScale === s.manifest.inputScale;
  try {
    session = await createSession(mergeModelPair(c.bytes, s.bytes, { shareInput }), opts, MERGED_ARCHITECTURE);
  } catch (err) {
    return err instanceof PairMergeError ? err.message : firstLine(err);
  }
  const mine = (role: ModelRole) => (n: string): boolean => n === SHARED_INPUT || n.startsWith(pairName(role, ''));
  try {
    return { kind: 'merged', session, cloud: modelIo(session, c, mine('cloud')), shadow: modelIo(session, s, mine('shadow')) };
  } catch (err) {
    await session.release();
    return firstLine(err);
  }
}

export async function releasePair(pair: ModelPair): Promise<void> {
  if (pair.kind === 'merged') await pair.session.release();
  else await Promise.all([pair.cloud.session.release(), pair.shadow.session.release()]);
}

/** Loads, checks and releases: a preflight for the CLI. */
export async function inspectModel(name: string, role: ModelRole, modelsDir: string): Promise<ModelManifest> {
  const model = await loadModel(name, role, modelsDir);
  await model.session.release();
  return model.manifest;
}

function checkSize(model: ModelInfo, h: number, w: number): void {
  const { fixedShape, sizeMultiple } = model.manifest.input;
  if (fixedShape && (fixedShape[2] !== h || fixedShape[3] !== w)) {
    throw bad(`model ${model.name} only accepts ${fixedShape[2]}x${fixedShape[3]} chips, got ${h}x${w}`);
  }
  if (h % sizeMultiple !== 0 || w % sizeMultiple !== 0) {
    throw bad(`model ${model.name} needs H and W to be multiples of ${sizeMultiple}, got ${h}x${w}`);
  }
}

/** Probabilities of `batch` images from the model's logits into `out` at `offset`; BAD_MODEL when the logits do not have the manifest's shape. */
function activate(model: ModelInfo, logits: Float32Array, out: Float32Array, offset: number, batch: number, h: number, w: number): void {
  const pixels = h * w;
  const { outputChannels } = model.manifest;
  if (logits.length !== batch * outputChannels * pixels) {
    throw bad(`model ${model.name} returned ${logits.length} values, expected ${batch}x${outputChannels}x${h}x${w}; its manifest is wrong`);
  }
  // NaN (a broken model) counts as certain cloud rather than silently clear. One loop per
  // activation: this runs for every pixel of every chip.
  const { activation } = model.manifest;
  for (let b = 0; b < batch; b++) {
    const o = offset + b * pixels;
    if (activation === 'softmax-channel-1') {
      const c0 = 2 * b * pixels;
      const c1 = c0 + pixels;
      for (let p = 0; p < pixels; p++) {
        const prob = 1 / (1 + Math.exp(logits[c0 + p]! - logits[c1 + p]!));
        out[o + p] = Number.isNaN(prob) ? 1 : prob;
      }
    } else if (activation === 'sigmoid') {
      const c = b * pixels;
      for (let p = 0; p < pixels; p++) {
        const prob = 1 / (1 + Math.exp(-logits[c + p]!));
        out[o + p] = Number.isNaN(prob) ? 1 : prob;
      }
    } else {
      const c = b * pixels;
      for (let p = 0; p < pixels; p++) {
        const prob = logits[c + p]!;
        out[o + p] = Number.isNaN(prob) ? 1 : prob;
      }
    }
  }
}

/** Caller-owned buffers predictProbabilities may use instead of allocating. */
export interface PredictBuffers {
  /**
   * At least n * 12 * h * w values: the scaled copy of the input, for models with an input scale.
   * May be `dn` itself (scaled in place) when the caller no longer needs the raw values.
   */
  input?: Float32Array;
  /** At least n * h * w values: receives the probabilities (a view of it is returned). */
  out?: Float32Array;
}

/**
 * Runs the model on raw DN `dn` [n, 12, h, w] and returns probabilities [n * h * w] in [0, 1].
 * Applies the manifest's input scale (on a scratch copy) and activation, and splits the batch
 * into chunks of `maxBatch` for batch-limited models.
 */
export async function predictProbabilities(model: LoadedModel, dn: Float32Array, n: number, h: number, w: number, buffers: PredictBuffers = {}): Promise<Float32Array> {
  const pixels = h * w;
  const perImage = INPUT_BANDS * pixels;
  if (dn.length !== n * perImage) {
    throw new CloudMaskError('INTERNAL', `predictProbabilities: got ${dn.length} values for [${n},${INPUT_BANDS},${h},${w}]`);
  }
  checkSize(model, h, w);
  const input = scaledInput(dn, model.manifest.inputScale, buffers.input);
  const chunk = model.manifest.input.maxBatch ?? n;
  const out = buffers.out && buffers.out.length >= n * pixels ? buffers.out.subarray(0, n * pixels) : new Float32Array(n * pixels);
  for (let start = 0; start < n; start += chunk) {
    const batch = Math.min(chunk, n - start);
    const data = input.subarray(start * perImage, (start + batch) * perImage);
    let logits: Float32Array;
    try {
      const feeds = { [model.inputName]: new ort.Tensor('float32', data, [batch, INPUT_BANDS, h, w]) };
      const result = await model.session.run(feeds);
      logits = result[model.outputName]!.data as Float32Array;
    } catch (err) {
      throw new CloudMaskError('INFERENCE_FAILED', `model ${model.name} failed on a ${batch}x${INPUT_BANDS}x${h}x${w} input: ${firstLine(err)}`, { cause: err });
    }
    activate(model, logits, out, start * pixels, batch, h, w);
  }
  return out;
}

/** Both models' probabilities for one chip, and where the time went. */
export interface PairPrediction {
  cloud: Float32Array;
  shadow: Float32Array;
  /** Both models, input scaling and activation included (one onnxruntime run when merged, two otherwise). */
  inferenceMs: number;
  /** Each model alone: only when they ran as two sessions, else null. */
  cloudMs: number | null;
  shadowMs: number | null;
}

/** Caller-owned buffers predictPair may use instead of allocating. */
export interface PairBuffers {
  /** Receive the probabilities (h * w values each). */
  cloud?: Float32Array;
  shadow?: Float32Array;
  /** Scaled copies of the input (12 * h * w values), for models with an input scale. */
  cloudInput?: Float32Array;
  shadowInput?: Float32Array;
}

/** `dn` times `scale` (into `into` when large enough), or `dn` itself for a scale of 1. */
function scaledInput(dn: Float32Array, scale: number, into?: Float32Array): Float32Array {
  if (scale === 1) return dn;
  const out = into && into.length >= dn.length ? into.subarray(0, dn.length) : new Float32Array(dn.length);
  for (let i = 0; i < dn.length; i++) out[i] = dn[i]! * scale;
  return out;
}

/** Both models on one chip of raw DN [1, 12, h, w]: probabilities as predictProbabilities gives them. */
export async function predictPair(pair: ModelPair, dn: Float32Array, h: number, w: number, buffers: PairBuffers = {}): Promise<PairPrediction> {
  if (pair.kind === 'separate') {
    const t0 = performance.now();
    const cloud = await predictProbabilities(pair.cloud, dn, 1, h, w, { input: buffers.cloudInput, out: buffers.cloud });
    const t1 = performance.now();
    const shadow = await predictProbabilities(pair.shadow, dn, 1, h, w, { input: buffers.shadowInput, out: buffers.shadow });
    const t2 = performance.now();
    return { cloud, shadow, inferenceMs: t2 - t0, cloudMs: t1 - t0, shadowMs: t2 - t1 };
  }
  const pixels = h * w;
  if (dn.length !== INPUT_BANDS * pixels) throw new CloudMaskError('INTERNAL', `predictPair: got ${dn.length} values for [1,${INPUT_BANDS},${h},${w}]`);
  const { session, cloud, shadow } = pair;
  checkSize(cloud, h, w);
  checkSize(shadow, h, w);
  const t0 = performance.now();
  const tensor = (data: Float32Array): InstanceType<typeof ort.Tensor> => new ort.Tensor('float32', data, [1, INPUT_BANDS, h, w]);
  const feeds = { [cloud.inputName]: tensor(scaledInput(dn, cloud.manifest.inputScale, buffers.cloudInput)) };
  // A shared input (same scale) is fed once.
  if (shadow.inputName !== cloud.inputName) feeds[shadow.inputName] = tensor(scaledInput(dn, shadow.manifest.inputScale, buffers.shadowInput));
  let result: InferenceSession.OnnxValueMapType;
  try {
    result = await session.run(feeds);
  } catch (err) {
    throw new CloudMaskError('INFERENCE_FAILED', `models ${cloud.name} + ${shadow.name} failed on a 1x${INPUT_BANDS}x${h}x${w} input: ${firstLine(err)}`, { cause: err });
  }
  const probabilities = (model: ModelInfo, into?: Float32Array): Float32Array => {
    const out = into && into.length >= pixels ? into.subarray(0, pixels) : new Float32Array(pixels);
    activate(model, result[model.outputName]!.data as Float32Array, out, 0, 1, h, w);
    return out;
  };
  const c = probabilities(cloud, buffers.cloud);
  const s = probabilities(shadow, buffers.shadow);
  return { cloud: c, shadow: s, inferenceMs: performance.now() - t0, cloudMs: null, shadowMs: null };
}
