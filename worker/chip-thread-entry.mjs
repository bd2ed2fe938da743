// Piscina thread entry: worker threads do not inherit a loader registered with module.register,
// so each thread registers tsx itself before loading the TypeScript task.
import { register } from 'tsx/esm/api';

register();
const task = await import('./chip-thread.ts');
export default task.default;
