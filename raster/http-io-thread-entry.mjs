// Entry of a chip thread's http I/O thread (raster/http-io-thread.ts). In the compiled build
// (dist/raster/) it loads the JavaScript; in the sources a new thread does not inherit the tsx
// loader of the thread that started it, so it registers tsx itself first.
import { existsSync } from 'node:fs';

const compiled = existsSync(new URL('./http-io-thread.js', import.meta.url));
if (!compiled) (await import('tsx/esm/api')).register();
await import(compiled ? './http-io-thread.js' : './http-io-thread.ts');
