/**
 * The `improve-cloud-mask` command: parses the command line, then loads only the subcommand it
 * runs (onnxruntime, NATS, geotiff and piscina load behind dynamic imports, so `--help`,
 * `--version` and `describe` start fast). Environment variables are read here, once.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { asCloudMaskError } from '../shared/errors.ts';
import { ARCHIVE_POSITIONAL, COMMANDS, isCommand, optionsFor, type CommandName } from './commands.ts';
import { splitHeaderLines, withNatsEnv, type CliEnv } from './env.ts';
import { commandHelp, globalHelp } from './help.ts';
import { createLogger, parseLogFormat, type Logger } from './log.ts';
import type { Flags } from './options.ts';

/** The same option tables the commands parse with (deploy tests check the manifests against them). */
export { COMMANDS, optionsFor };

let root: string | undefined;
/** The folder with our package.json, found upwards: cli/ in the sources, dist/cli/ in the build. */
export function packageRoot(): string {
  if (root) return root;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return (root = dir);
}

export function version(): string {
  return (JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

export function sampleSceneDir(): string {
  return process.env.ICM_SAMPLE_DIR ?? path.resolve(packageRoot(), '..', 'shared', 'data', 's2-l2a-29RKH');
}

type Runner = (flags: Flags, env: CliEnv) => Promise<number>;

const RUNNERS: Record<CommandName, Runner> = {
  run: async (flags, env) => (await import('./run-command.ts')).runCommand(flags, env),
  batch: async (flags, env) => (await import('./batch-command.ts')).batchCommand(flags, env),
  submit: async (flags, env) => (await import('./archive-commands.ts')).submitCommand(flags, env),
  coordinator: async (flags, env) => (await import('./archive-commands.ts')).coordinatorCommand(flags, env),
  status: async (flags, env) => (await import('./archive-commands.ts')).statusCommand(flags, env),
  report: async (flags, env) => (await import('./archive-commands.ts')).reportCommand(flags, env),
  worker: async (flags, env) => (await import('./worker-command.ts')).workerCommand(flags, env),
  demo: async (flags, env) => (await import('./demo-command.ts')).demoCommand(flags, env, sampleSceneDir()),
  describe: async (flags) => (await import('./describe.ts')).describeCommand(flags),
  evaluate: async (_flags, env) => {
    const { evaluateModels, formatEvalTable } = await import('../scripts/lib/evaluate.ts');
    process.stdout.write(`${formatEvalTable(await evaluateModels({ modelsDir: env.modelsDir }))}\n`);
    return 0;
  },
};

/** The commands that speak NATS (demo stays embedded whatever the environment says). */
const CLUSTER_COMMANDS = new Set<CommandName>(['run', 'batch', 'worker', 'submit', 'coordinator', 'status', 'report']);

/**
 * Sets the exit code once the command is over. Whatever handle is still open then (a socket, a
 * timer, a thread) may not keep the process alive: it exits 2 s later at the latest. The timer
 * is unref'd, so a clean exit is not delayed by it.
 */
export function exitWhenDone(code: number): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 2000).unref();
}

/** A usage error: what was wrong and where to read more, on stderr, exit 2. */
class UsageError extends Error {}

function parseCommandLine(command: CommandName, args: string[]): Flags {
  try {
    const positional = ARCHIVE_POSITIONAL.includes(command);
    const { values, positionals } = parseArgs({ args, options: optionsFor(command), strict: true, allowPositionals: positional });
    if (positionals.length > 1) throw new UsageError(`${command}: one archive name, got ${positionals.length}: ${positionals.join(' ')}`);
    return positionals.length ? { ...values, archive: positionals[0] } : (values as Flags);
  } catch (err) {
    // One line: Node's message spans three for an option value starting with a dash.
    if (String((err as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS')) throw new UsageError(`${command}: ${(err as Error).message.split('\n').join(' ')}`);
    throw err;
  }
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  let logger: Logger = createLogger('text');
  try {
    if (command === '--version' || command === '-V') {
      process.stdout.write(`improve-cloud-mask ${version()}\n`);
      return 0;
    }
    if (command === undefined) {
      process.stderr.write(globalHelp());
      return 2;
    }
    if (command === 'help' || command === '--help' || command === '-h') {
      process.stdout.write(rest[0] && isCommand(rest[0]) ? commandHelp(rest[0]) : globalHelp());
      return 0;
    }
    if (!isCommand(command)) throw new UsageError(command.startsWith('-') ? `unknown option '${command}' before the command` : `unknown command '${command}'`);
    const parsed = parseCommandLine(command, rest);
    // NATS settings may come from the environment (NATS_URL, NATS_USER, ... as the nats CLI names them).
    const flags = CLUSTER_COMMANDS.has(command) ? withNatsEnv(parsed, process.env) : parsed;
    if (flags.help) {
      process.stdout.write(commandHelp(command));
      return 0;
    }
    logger = createLogger(parseLogFormat(flags['log-format']));
    const env: CliEnv = {
      modelsDir: (flags['models-dir'] as string | undefined) ?? process.env.ICM_MODELS_DIR ?? path.join(packageRoot(), 'models'),
      log: (line) => logger.log(line),
      logger,
      quiet: Boolean(flags.quiet),
      packageRoot: packageRoot(),
      httpHeaderLines: splitHeaderLines(process.env.ICM_HTTP_HEADERS ?? ''),
    };
    return await RUNNERS[command](flags, env);
  } catch (err) {
    return reportFailure(err, command, logger);
  }
}

function reportFailure(err: unknown, command: string | undefined, logger: Logger): number {
  if (err instanceof UsageError) {
    const help = command && isCommand(command) ? `improve-cloud-mask ${command} --help` : 'improve-cloud-mask --help';
    logger.event('error', { code: 'BAD_OPTION', msg: err.message, exit: 2 }, `improve-cloud-mask: ${err.message} (see ${help})`, 'error');
    return 2;
  }
  const e = asCloudMaskError(err);
  const hint = e.code === 'BAD_OPTION' && command && isCommand(command) ? ` (see improve-cloud-mask ${command} --help)` : '';
  logger.event('error', { code: e.code, msg: e.message, exit: e.exitCode }, `improve-cloud-mask: error [${e.code}]: ${e.message}${hint}`, 'error');
  return e.exitCode;
}
