/**
 * A model pair that looks far: three 3x3 convolutions dilated by `dilation` (zero padding, as
 * FPN-class models pad), so the output at a pixel depends on the input up to 3 x dilation pixels
 * away. For tests of the inference domain: with a truthful manifest it must run per chip (its
 * field is wider than the chips' overlap), and run on a smaller domain it would give other
 * values near the chip edges. Its outputs mean nothing.
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ModelManifest, ModelRole } from '../../shared/manifest.ts';
import { attr, encodeModel, GraphBuilder } from './onnx-writer.ts';

export interface WideFieldOptions {
  /** Dilation of each of the three 3x3 convolutions: receptive radius 3 x dilation. */
  dilation: number;
  /** Logit = (mean DN of the neighbourhood - centre) / spread; centre it on the scene's values so thresholds split it. */
  centreDn: number;
  spreadDn: number;
}

function build(role: ModelRole, o: WideFieldOptions): Uint8Array {
  const g = new GraphBuilder();
  const d = o.dilation;
  const conv = { kernel_shape: attr.ints([3, 3]), dilations: attr.ints([d, d]), pads: attr.ints([d, d, d, d]) };
  // The shadow model gets reflectance (DN x 1e-4), the cloud model raw DN, as FarmVibes feeds them.
  const unit = role === 'cloud' ? 1 : 1e-4;
  const first = g.op('Conv', ['input', g.floatInit('w1', [1, 12, 3, 3], new Float32Array(108).fill(1 / (108 * o.spreadDn * unit))), g.floatInit('b1', [1], [-o.centreDn / o.spreadDn])], conv, 'c1');
  const second = g.op('Conv', [first, g.floatInit('w2', [1, 1, 3, 3], new Float32Array(9).fill(1 / 9))], conv, 'c2');
  const third = g.op('Conv', [second, g.floatInit('w3', [1, 1, 3, 3], new Float32Array(9).fill(1 / 9))], conv, 'c3');
  const k1 = { kernel_shape: attr.ints([1, 1]) };
  const channels = role === 'cloud' ? 2 : 1;
  const w = role === 'cloud' ? [-0.5, 0.5] : [1];
  g.op('Conv', [third, g.floatInit('wo', [channels, 1, 1, 1], w), g.floatInit('bo', [channels], new Array(channels).fill(0))], k1, 'logits');
  const graph = g.build(`wide-field-${role}`, [{ name: 'input', dims: ['N', 12, 'H', 'W'] }], [{ name: 'logits', dims: ['N', channels, 'H', 'W'] }]);
  return encodeModel({ graph, opset: 13, docString: `test model: receptive radius ${3 * d} px` });
}

/**
 * Writes `<prefix>-cloud.onnx` and `<prefix>-shadow.onnx` with manifests declaring `overlapPx`
 * (the truth is 3 x dilation; pass less to make a manifest that lies). Returns the file names.
 */
export function writeWideFieldPair(dir: string, prefix: string, o: WideFieldOptions, overlapPx: number): { cloud: string; shadow: string } {
  const names = { cloud: `${prefix}-cloud.onnx`, shadow: `${prefix}-shadow.onnx` };
  for (const role of ['cloud', 'shadow'] as const) {
    const bytes = build(role, o);
    const manifest: ModelManifest = {
      file: names[role], role, architecture: 'test-wide-field', bandsUsed: Array.from({ length: 12 }, (_, i) => i),
      inputScale: role === 'cloud' ? 1 : 1e-4, activation: role === 'cloud' ? 'softmax-channel-1' : 'sigmoid', outputChannels: role === 'cloud' ? 2 : 1,
      input: { fixedShape: null, sizeMultiple: 1, maxBatch: null }, overlapPx,
      provenance: 'scripts/lib/wide-field.ts (test model)', sha256: createHash('sha256').update(bytes).digest('hex'),
      note: `three 3x3 convolutions dilated by ${o.dilation}: receptive radius ${3 * o.dilation} px`,
    };
    writeFileSync(path.join(dir, names[role]), bytes);
    writeFileSync(path.join(dir, `${names[role]}.json`), `${JSON.stringify(manifest, null, 2)}\n`);
  }
  return names;
}
