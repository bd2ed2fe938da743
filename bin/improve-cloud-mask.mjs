#!/usr/bin/env node
// Runs the TypeScript CLI through tsx's loader: no build step between a clone and a run.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../cli/main.ts');
const code = await main(process.argv.slice(2));
process.exitCode = code;
// The command is over: whatever handle is still open (a socket, a timer, a thread) must not
// keep the process alive. The timer is unref'd, so a clean exit is not delayed by it.
setTimeout(() => process.exit(code), 2000).unref();
