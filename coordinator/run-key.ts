/**
 * Identities of a run: the scene id comes from the input, the parameter hash from everything
 * that changes the output. Restarting the same command gives the same run key (resume); a
 * finished output carries the hash so a batch can skip it.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { WorkflowParams } from '../shared/params.ts';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

export function canonicalInput(input: string): string {
  return /^https?:\/\//i.test(input) ? input : path.resolve(input);
}

export function sceneId(input: string): string {
  return sha(canonicalInput(input)).slice(0, 12);
}

/**
 * Hash of the inputs and parameters that determine the output mask. in_memory does not; nor does
 * per_chip: the inference domain is exact (shared/tiling.ts isExactDomain, and the bit-identity
 * tests), so a mask made either way is the same, and a batch need not redo it.
 */
export function paramHash(input: string, productMask: string, params: WorkflowParams): string {
  const { in_memory: _inMemory, per_chip: _perChip, ...rest } = params;
  const mask = productMask === 'scl' || productMask === 'none' ? productMask : canonicalInput(productMask);
  return sha(JSON.stringify({ input: canonicalInput(input), mask, ...rest, layout: '512/384' })).slice(0, 16);
}

export function runKey(input: string, productMask: string, params: WorkflowParams): string {
  return `${sceneId(input)}-${paramHash(input, productMask, params)}`;
}
