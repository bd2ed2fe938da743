/**
 * The workflow's parameters, under FarmVibes' names, with their defaults and descriptions (the
 * seed's text), and the one resolve step that validates them and names the bad field.
 */
import { CloudMaskError } from './errors.ts';
import { DEFAULT_CLOUD_MODEL, DEFAULT_SHADOW_MODEL } from './manifest.ts';

export interface WorkflowParams {
  /** Pixel is cloud when cloud probability > cloud_thr. Default 0.3. */
  cloud_thr: number;
  /** Pixel is shadow when shadow probability > shadow_thr. Default 0.2. */
  shadow_thr: number;
  /** Read the whole raster once (more memory) instead of window by window. Default false. */
  in_memory: boolean;
  /** Cloud model file name inside the models directory. */
  cloud_model: string;
  /** Shadow model file name inside the models directory. */
  shadow_model: string;
  /** Remove cloud components and fill holes smaller than this many pixels (8-connected). Default 0 (off, as FarmVibes). */
  min_area: number;
  /** Subtract the baseline-04.00 +1000 DN offset before the models. Default false (FarmVibes behaviour). */
  harmonize: boolean;
  /**
   * Run the models over every whole 512x512 chip, as FarmVibes does, even where the models'
   * manifests allow running them over each chip's write window plus their margin only. The
   * masks are the same either way (bit for bit); this costs time. Default false.
   */
  per_chip: boolean;
}

interface ParamSpec {
  /** JSON-schema-like type name, for `describe --json`. */
  type: 'number' | 'integer' | 'boolean' | 'string';
  default: number | boolean | string;
  description: string;
  /** FarmVibes exposes it in the workflow (true) or it is our addition (false). */
  farmvibes: boolean;
}

export const PARAMETERS: Record<keyof WorkflowParams, ParamSpec> = {
  cloud_thr: { type: 'number', default: 0.3, farmvibes: true, description: 'Confidence threshold to assign a pixel as cloud.' },
  shadow_thr: { type: 'number', default: 0.2, farmvibes: true, description: 'Confidence threshold to assign a pixel as shadow.' },
  in_memory: {
    type: 'boolean',
    default: false,
    farmvibes: true,
    description: 'Whether to load the whole raster in memory when running predictions. Uses more memory (~3 GB for a full tile) but reads each source byte once.',
  },
  cloud_model: {
    type: 'string',
    default: DEFAULT_CLOUD_MODEL,
    farmvibes: true,
    description: "ONNX file for the cloud model, resolved in the models directory. FarmVibes' cloud_model{1..5}_cpu.onnx work as drop-ins (--models-dir); the default is this project's CheapLab-class model.",
  },
  shadow_model: {
    type: 'string',
    default: DEFAULT_SHADOW_MODEL,
    farmvibes: true,
    description: "ONNX file for the shadow model, resolved in the models directory. FarmVibes' shadow.onnx works as a drop-in (--models-dir).",
  },
  min_area: { type: 'integer', default: 0, farmvibes: false, description: 'Remove cloud components and fill clear holes smaller than this many pixels (8-connected); 0 = off, as FarmVibes.' },
  harmonize: { type: 'boolean', default: false, farmvibes: false, description: 'Subtract the +1000 DN offset of processing baseline >= 04.00 before the models (default off = FarmVibes behaviour).' },
  per_chip: {
    type: 'boolean',
    default: false,
    farmvibes: false,
    description: "Run the models over every whole 512x512 chip as FarmVibes does, even where the models' manifests allow running them over each chip's write window plus their receptive-field margin only. Same masks bit for bit, about 1.8x the inference time.",
  },
};

export const DEFAULT_PARAMS: WorkflowParams = Object.fromEntries(
  Object.entries(PARAMETERS).map(([k, v]) => [k, v.default]),
) as unknown as WorkflowParams;

function badParam(name: string, what: string): CloudMaskError {
  return new CloudMaskError('BAD_OPTION', `parameter ${name} ${what}`);
}

/** Fills defaults (null or undefined = default, as the workflow's nulls) and validates every field. */
export function resolveParams(input: Record<string, unknown>): WorkflowParams {
  for (const key of Object.keys(input)) {
    if (!(key in PARAMETERS)) throw badParam(key, `is unknown (known: ${Object.keys(PARAMETERS).join(', ')})`);
  }
  const pick = <K extends keyof WorkflowParams>(k: K): unknown => (input[k] === null || input[k] === undefined ? DEFAULT_PARAMS[k] : input[k]);
  const prob = (k: 'cloud_thr' | 'shadow_thr'): number => {
    const v = typeof pick(k) === 'string' ? Number(pick(k)) : pick(k);
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1) throw badParam(k, `must be a number in [0, 1], got ${String(input[k])}`);
    return v;
  };
  const bool = (k: 'in_memory' | 'harmonize' | 'per_chip'): boolean => {
    const v = pick(k);
    if (typeof v === 'boolean') return v;
    if (v === 'true' || v === 'false') return v === 'true';
    throw badParam(k, `must be true or false, got ${String(v)}`);
  };
  const model = (k: 'cloud_model' | 'shadow_model'): string => {
    const v = pick(k);
    if (typeof v !== 'string' || v.length === 0) throw badParam(k, 'must be a model file name');
    return v;
  };
  const area = typeof pick('min_area') === 'string' ? Number(pick('min_area')) : pick('min_area');
  if (typeof area !== 'number' || !Number.isInteger(area) || area < 0) throw badParam('min_area', `must be a non-negative integer, got ${String(input.min_area)}`);
  return {
    cloud_thr: prob('cloud_thr'),
    shadow_thr: prob('shadow_thr'),
    in_memory: bool('in_memory'),
    cloud_model: model('cloud_model'),
    shadow_model: model('shadow_model'),
    min_area: area,
    harmonize: bool('harmonize'),
    per_chip: bool('per_chip'),
  };
}

/** The workflow's sources, sinks and tasks (the seed's words), for both forms of `describe`. */
export const WORKFLOW_IO = {
  sources: {
    s2_raster: 'Sentinel-2 L2A raster (stacked 12-band GeoTIFF, per-band COG folder, STAC item, or URL).',
    product_mask:
      "Cloud mask obtained from the product's quality indicators: 'product' (default; MSK_CLASSI_B00 opaque + cirrus, or MSK_CLOUDS_B00.gml OPAQUE + CIRRUS polygons; SCL with a warning where the input has neither), 'scl', 'none', or a GeoTIFF on the scene grid.",
  },
  sinks: { mask: 'Improved cloud mask (uint8 GeoTIFF, 0 = clear, 1 = cloud).' },
  tasks: {
    cloud: 'Computes cloud probabilities using a convolutional segmentation model for L2A.',
    shadow: 'Computes shadow probabilities using a convolutional segmentation model for L2A.',
    merge: 'Merges cloud, shadow and product cloud masks into a single mask.',
  },
  /** Settings FarmVibes fixes too. */
  fixed: { window: 512, overlap: 0.25, step: 384, batch: 1, closing_size: 5 },
} as const;

/** Words of `text` in lines of at most `width` characters. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  return [...lines, line];
}

/** The workflow as the seed describes it, for `improve-cloud-mask describe`. */
export function describeWorkflow(): string {
  const section = (title: string, entries: Record<string, string>): string[] => [title, ...Object.entries(entries).flatMap(([k, v]) => wrap(v, 100 - 16).map((line, i) => `  ${(i === 0 ? k : '').padEnd(13)} ${line}`))];
  const lines = [
    'improve_cloud_mask (FarmVibes.AI data_ingestion/sentinel2/improve_cloud_mask, reimplemented)',
    '',
    'Improves cloud masks by merging the product cloud mask with cloud and shadow masks computed by',
    'machine learning segmentation models. This workflow computes cloud and shadow probabilities using',
    "segmentation models, thresholds them, and merges the models' masks with the product mask.",
    '',
    ...section('Sources:', WORKFLOW_IO.sources),
    ...section('Sinks:', WORKFLOW_IO.sinks),
    ...section('Tasks:', WORKFLOW_IO.tasks),
    'Parameters:',
  ];
  for (const [name, spec] of Object.entries(PARAMETERS)) {
    lines.push(`  ${name.padEnd(13)} default ${JSON.stringify(spec.default)}${spec.farmvibes ? '' : ' (our addition)'}`);
    lines.push(`  ${''.padEnd(13)} ${spec.description}`);
  }
  const f = WORKFLOW_IO.fixed;
  lines.push(`Fixed settings (as FarmVibes): window ${f.window}, overlap ${f.overlap} (step ${f.step}), batch ${f.batch}, closing_size ${f.closing_size}.`);
  return lines.join('\n');
}
