// Piscina thread entry for the benchmark's ceiling measurement (see worker/chip-thread-entry.mjs
// for why each thread registers tsx and stubs a global Worker).
import { register } from 'tsx/esm/api';

if (typeof globalThis.Worker !== 'function') {
  globalThis.Worker = class UnusedWorker {
    constructor() {
      throw new Error('geotiff decoder pools are not used in benchmark threads');
    }
  };
}

register();
const tasks = await import('./threads.ts');
export const decodeTiles = tasks.decodeTiles;
export const inferChips = tasks.inferChips;
export default tasks.decodeTiles;
