/**
 * The deployment files (deploy/) against the code: the commands parse with the CLI's own option
 * table, ports and names agree across compose, Prometheus, Kubernetes and KEDA, NATS allows the
 * largest message, the image runs as non-root and contains everything the CLI imports, the
 * kustomization builds (namespace and image override on every resource), and the compiled
 * build the image runs starts without tsx.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fromFile } from 'geotiff';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { COMMANDS, optionsFor } from '../cli/main.ts';
import { NATS_ENV } from '../cli/env.ts';
import { MAX_MESSAGE_BYTES } from '../shared/messages.ts';
import { JOB_LANES, names } from '../shared/subjects.ts';
import { loadRecorder, runCli, SAMPLE as SAMPLE_SCENE } from './helpers/cli.ts';
import { REPO_ROOT } from './helpers/dashboard.ts';

const read = (rel: string): string => readFileSync(path.join(REPO_ROOT, rel), 'utf8');
const SUBCOMMANDS = ['run', 'batch', 'worker', 'coordinator'];

// ---- compose ----
interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: unknown[];
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  container_name?: string;
  deploy?: { replicas?: number };
  healthcheck?: { test: string[] };
}
const compose = parse(read('deploy/docker-compose.yml')) as { services: Record<string, ComposeService> };

// ---- kubernetes ----
interface K8sContainer {
  name: string;
  image: string;
  imagePullPolicy?: string;
  command?: string[];
  args?: string[];
  env?: { name: string; value?: string }[];
  ports?: { name?: string; containerPort: number }[];
  resources?: { limits?: { cpu?: string } };
  livenessProbe?: { httpGet?: { path: string; port: number | string } };
  readinessProbe?: { httpGet?: { path: string; port: number | string } };
}
interface K8sDoc {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
}
interface PodTemplate {
  metadata?: { annotations?: Record<string, string> };
  spec: { containers: K8sContainer[]; volumes?: { name: string; persistentVolumeClaim?: { claimName: string } }[] };
}

const K8S_DIR = path.join(REPO_ROOT, 'deploy', 'k8s');
interface Kustomization {
  namespace?: string;
  resources: string[];
  images?: { name: string; newName?: string; newTag?: string }[];
}
const kustomization = parse(read('deploy/k8s/kustomization.yaml')) as Kustomization;
// The manifests are what the kustomization lists (a test checks it lists every file).
const k8sDocs: (K8sDoc & { file: string })[] = kustomization.resources
  .flatMap((file) =>
    parseAllDocuments(readFileSync(path.join(K8S_DIR, file), 'utf8')).map((doc) => {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
      return { ...(doc.toJS() as K8sDoc), file };
    }),
  );
const k8s = (kind: string, name?: string): K8sDoc => {
  const doc = k8sDocs.find((d) => d.kind === kind && (name === undefined || d.metadata.name === name));
  if (!doc) throw new Error(`no ${kind} ${name ?? ''} in deploy/k8s`);
  return doc;
};
const podTemplate = (doc: K8sDoc): PodTemplate => {
  const spec = doc.spec as { template?: PodTemplate; jobTemplate?: { spec: { template: PodTemplate } } };
  return spec.template ?? spec.jobTemplate!.spec.template;
};
const workloads = k8sDocs.filter((d) => ['Deployment', 'StatefulSet', 'Job', 'DaemonSet'].includes(d.kind));
const IMAGE = compose.services.worker.image!;
const isOurs = (image: string | undefined): boolean => image?.split(':')[0] === IMAGE.split(':')[0];
const ourContainers = workloads.flatMap((w) => podTemplate(w).spec.containers.filter((c) => isOurs(c.image)).map((c) => ({ workload: w, container: c })));

/** The argv our image gets: compose `command` or Kubernetes `args` (the ENTRYPOINT stays). */
interface Invocation {
  where: string;
  argv: string[];
  env: string[];
}
const invocations: Invocation[] = [
  ...Object.entries(compose.services)
    .filter(([, s]) => isOurs(s.image))
    .map(([name, s]) => ({ where: `compose ${name}`, argv: (s.command ?? []).map(String), env: Object.keys(s.environment ?? {}) })),
  ...ourContainers.map(({ workload, container }) => ({
    where: `k8s ${workload.kind}/${workload.metadata.name}`,
    argv: (container.args ?? []).map(String),
    env: (container.env ?? []).map((e) => e.name),
  })),
];

/** Parses argv exactly as cli/main.ts does (the command's own option table); throws on an unknown flag or a missing value. */
function cli(argv: string[]): { command: string; flags: Record<string, string | boolean | string[] | undefined> } {
  const [command, ...rest] = argv;
  if (!Object.hasOwn(COMMANDS, command)) throw new Error(`unknown command ${command}`);
  const { values } = parseArgs({ args: rest, options: optionsFor(command as keyof typeof COMMANDS), strict: true, allowPositionals: false });
  return { command, flags: values as Record<string, string | boolean | string[] | undefined> };
}
const flagsOf = (where: string): ReturnType<typeof cli>['flags'] => cli(invocations.find((i) => i.where === where)!.argv).flags;

/** NATS config sizes: k/m/g are powers of 1000, kb/mb/gb (and ki/mi/gi) of 1024. */
function natsSize(text: string): number {
  const m = /^(\d+)\s*([kmgt]?)(b|i|ib)?$/i.exec(text.trim());
  if (!m) throw new Error(`not a NATS size: ${text}`);
  const power = ' kmgt'.indexOf(m[2].toLowerCase() || ' ');
  return Number(m[1]) * (m[3] ? 1024 : 1000) ** power;
}
const natsConf = read('deploy/nats.conf');
const natsSetting = (key: string): string => {
  const m = new RegExp(`^\\s*${key}\\s*[:=]\\s*"?([^"\\n#]+?)"?\\s*(#.*)?$`, 'm').exec(natsConf);
  if (!m) throw new Error(`nats.conf has no ${key}`);
  return m[1];
};
/** Kubernetes quantities: 20Gi, 512Mi, 2G. */
const quantity = (q: string): number => {
  const m = /^(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  if (!m) throw new Error(`not a quantity: ${q}`);
  const unit = m[2] ?? '';
  const binary = unit.endsWith('i');
  return Number(m[1]) * (binary ? 1024 : 1000) ** (' KMGT'.indexOf((unit[0] ?? ' ').toUpperCase()) || 0);
};

describe('commands in compose and kubernetes', () => {
  it('finds the coordinator and worker invocations', () => {
    expect(invocations.map((i) => i.where).sort()).toEqual(['compose coordinator', 'compose scene-coordinator', 'compose worker', 'k8s Deployment/icm-coordinator', 'k8s Deployment/icm-worker', 'k8s Job/icm-batch']);
  });

  it.each(invocations.map((i) => [i.where, i] as const))('%s parses with the CLI options', (_, inv) => {
    const { command, flags } = cli(inv.argv);
    expect(SUBCOMMANDS).toContain(command);
    if (command === 'batch') expect(flags.manifest && flags['out-dir']).toBeTruthy();
    expect(flags.nats, 'cluster deployments coordinate through NATS').toMatch(/^nats:\/\//);
    expect(flags['metrics-port']).toMatch(/^\d+$/);
    // The default 127.0.0.1 cannot be scraped from another container or pod.
    expect(flags['metrics-host']).toBe('0.0.0.0');
  });

  it('sets only environment variables the code reads', () => {
    const readByCode = new Set<string>();
    const walk = (dir: string): void => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        if (['node_modules', '.git', 'test'].includes(entry.name)) continue;
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(full);
        else if (/\.(ts|mjs)$/.test(entry.name)) for (const [, v] of readFileSync(full, 'utf8').matchAll(/process\.env\.([A-Z0-9_]+)/g)) readByCode.add(v);
      }
    };
    walk(REPO_ROOT);
    // NATS settings are read by name from one table (cli/options.ts), as the nats CLI names them.
    for (const v of Object.keys(NATS_ENV)) readByCode.add(v);
    expect(readByCode).toContain('ICM_MODELS_DIR');
    for (const inv of invocations) for (const v of inv.env) expect(readByCode, `${inv.where} sets ${v}`).toContain(v);
  });

  it('uses one image name in compose and kubernetes', () => {
    const images = new Set([
      ...Object.values(compose.services).filter((s) => s.build).map((s) => s.image),
      ...ourContainers.map(({ container }) => container.image),
    ]);
    expect([...images]).toEqual([IMAGE]);
  });
});

describe('docker compose', () => {
  const { services } = compose;

  it('lets the workers scale: no fixed name, no published port', () => {
    expect(services.worker.deploy?.replicas).toBeGreaterThanOrEqual(1);
    expect(services.worker.container_name).toBeUndefined();
    expect(services.worker.ports).toBeUndefined();
  });

  it('builds with deploy/Dockerfile from the repo root and mounts files that exist', () => {
    for (const s of Object.values(services).filter((s) => s.build)) {
      const context = path.resolve(REPO_ROOT, 'deploy', s.build!.context);
      expect(context).toBe(REPO_ROOT);
      expect(existsSync(path.join(context, s.build!.dockerfile))).toBe(true);
    }
    for (const s of Object.values(services)) {
      for (const v of s.volumes ?? []) {
        const src = v.split(':')[0];
        if (src.startsWith('.')) expect(existsSync(path.resolve(REPO_ROOT, 'deploy', src)), v).toBe(true);
      }
    }
  });

  it('points --nats at the nats service on the port nats.conf listens on', () => {
    for (const name of ['coordinator', 'scene-coordinator', 'worker']) {
      const url = new URL(String(flagsOf(`compose ${name}`).nats));
      expect(services[url.hostname]?.image).toMatch(/^nats:/);
      expect(url.port).toBe(natsSetting('port'));
    }
    expect(services.nats.volumes).toContain('./nats.conf:/etc/nats/nats.conf:ro');
  });

  it('scrapes the coordinator and every worker replica on their --metrics-port', () => {
    type Scrape = { job_name: string; static_configs?: { targets: string[] }[]; dns_sd_configs?: { names: string[]; type: string; port: number }[] };
    const prom = parse(read('deploy/prometheus.yml')) as { scrape_configs: Scrape[] };
    const job = (n: string): Scrape => prom.scrape_configs.find((s) => s.job_name === n)!;
    expect(job('coordinator').static_configs![0].targets).toEqual([`coordinator:${String(flagsOf('compose coordinator')['metrics-port'])}`]);
    const dns = job('worker').dns_sd_configs![0];
    expect(dns).toMatchObject({ names: ['worker'], type: 'A', port: Number(flagsOf('compose worker')['metrics-port']) });
    expect(job('scene-coordinator').dns_sd_configs![0]).toMatchObject({ names: ['scene-coordinator'], type: 'A', port: Number(flagsOf('compose scene-coordinator')['metrics-port']) });
    expect(services.prometheus.volumes).toContain('./prometheus.yml:/etc/prometheus/prometheus.yml:ro');
    expect(services.worker.healthcheck!.test.join(' ')).toContain(`http://127.0.0.1:${String(flagsOf('compose worker')['metrics-port'])}/readyz`);
  });

  it.skipIf(!existsSync('/usr/bin/promtool'))('has a Prometheus config promtool accepts', () => {
    execFileSync('/usr/bin/promtool', ['check', 'config', path.join(REPO_ROOT, 'deploy/prometheus.yml')], { stdio: 'pipe' });
  });
});

describe('nats.conf', () => {
  it('allows the largest message the code sends', () => {
    expect(natsSize('8MB')).toBe(8 * 1024 * 1024);
    expect(natsSize(natsSetting('max_payload'))).toBeGreaterThanOrEqual(MAX_MESSAGE_BYTES);
  });

  it('keeps JetStream on the data volume, within the Kubernetes volume size', () => {
    // The store is wherever NATS_STORE_DIR says (no default: a server run by hand must be told).
    expect(natsSetting('store_dir')).toBe('$NATS_STORE_DIR');
    expect(compose.services.nats.environment?.NATS_STORE_DIR).toMatch(/^\/data\//);
    expect(compose.services.nats.volumes).toContain('nats-data:/data');
    const sts = k8s('StatefulSet', 'nats');
    const claim = (sts.spec as { volumeClaimTemplates: { metadata: { name: string }; spec: { resources: { requests: { storage: string } } } }[] }).volumeClaimTemplates[0];
    const mount = podTemplate(sts).spec.containers[0] as K8sContainer & { volumeMounts: { name: string; mountPath: string }[] };
    expect(mount.volumeMounts.find((m) => m.name === claim.metadata.name)?.mountPath).toBe('/data');
    expect(mount.env?.find((e) => e.name === 'NATS_STORE_DIR')?.value).toMatch(/^\/data\//);
    expect(natsSize(natsSetting('max_file_store'))).toBeLessThan(quantity(claim.spec.resources.requests.storage));
  });

  it('is the config the Kubernetes ConfigMap carries', () => {
    expect(k8s('ConfigMap', 'nats-config').data!['nats.conf']).toBe(natsConf);
  });

  it.skipIf(!existsSync('/usr/sbin/nats-server'))('is a config nats-server accepts', () => {
    const env = { ...process.env, NATS_USER: 'icm', NATS_PASSWORD: 'test1234', NATS_STORE_DIR: '/tmp/icm-nats-conf-check' };
    execFileSync('/usr/sbin/nats-server', ['-t', '-c', path.join(REPO_ROOT, 'deploy/nats.conf')], { stdio: 'pipe', env });
  });
});

describe('kubernetes', () => {
  const namespace = k8s('Namespace').metadata.name;
  const worker = k8s('Deployment', 'icm-worker');
  const workerContainer = podTemplate(worker).spec.containers[0];
  const natsService = k8s('Service', 'nats');
  const servicePort = (name: string): number => (natsService.spec as { ports: { name: string; port: number }[] }).ports.find((p) => p.name === name)!.port;

  it('puts everything in one namespace', () => {
    for (const d of k8sDocs.filter((d) => d.kind !== 'Namespace')) expect(d.metadata.namespace, `${d.file} ${d.kind}/${d.metadata.name}`).toBe(namespace);
  });

  it.each(ourContainers.map(({ workload, container }) => [`${workload.kind}/${workload.metadata.name}`, workload, container] as const))(
    '%s: scrape annotation, container port and probes use --metrics-port',
    (where, workload, container) => {
      const port = Number(flagsOf(`k8s ${where}`)['metrics-port']);
      const annotations = podTemplate(workload).metadata?.annotations ?? {};
      expect(annotations['prometheus.io/scrape']).toBe('true');
      expect(annotations['prometheus.io/port']).toBe(String(port));
      expect(annotations['prometheus.io/path']).toBe('/metrics');
      const resolve = (p: number | string): number => (typeof p === 'number' ? p : container.ports!.find((cp) => cp.name === p)!.containerPort);
      expect(container.ports?.map((p) => p.containerPort)).toContain(port);
      for (const probe of [container.livenessProbe, container.readinessProbe]) if (probe) expect(resolve(probe.httpGet!.port)).toBe(port);
      expect(container.command, 'the image ENTRYPOINT must stay').toBeUndefined();
      expect(container.imagePullPolicy ?? 'IfNotPresent').not.toBe('Always');
    },
  );

  it('probes the worker on /healthz and /readyz, which the metrics server serves', () => {
    const server = read('cli/metrics-server.ts');
    expect(workerContainer.livenessProbe?.httpGet?.path).toBe('/healthz');
    expect(workerContainer.readinessProbe?.httpGet?.path).toBe('/readyz');
    for (const p of ['/healthz', '/readyz', '/metrics']) expect(server).toContain(`'${p}'`);
  });

  it('gives each worker as many inference threads as CPUs', () => {
    const threads = flagsOf('k8s Deployment/icm-worker').threads;
    const cpu = workerContainer.resources?.limits?.cpu;
    if (threads !== undefined && cpu !== undefined) expect(Number(threads)).toBe(Number(cpu));
  });

  it('points --nats at the nats Service client port', () => {
    for (const { workload } of ourContainers) {
      const url = new URL(String(flagsOf(`k8s ${workload.kind}/${workload.metadata.name}`).nats));
      expect([natsService.metadata.name, `${natsService.metadata.name}.${namespace}.svc.cluster.local`]).toContain(url.hostname);
      expect(String(servicePort('client'))).toBe(url.port);
    }
    expect(String(servicePort('client'))).toBe(natsSetting('port'));
    expect(String(servicePort('monitor'))).toBe(natsSetting('http_port'));
  });

  it('mounts claims that exist', () => {
    const claims = new Set(k8sDocs.filter((d) => d.kind === 'PersistentVolumeClaim').map((d) => d.metadata.name));
    for (const w of workloads) for (const v of podTemplate(w).spec.volumes ?? []) if (v.persistentVolumeClaim) expect(claims).toContain(v.persistentVolumeClaim.claimName);
  });

  it('scales the worker Deployment on chips remaining, and names no consumer the code does not create (KEDA)', () => {
    const so = k8s('ScaledObject', 'icm-worker').spec as { scaleTargetRef: { name: string }; triggers: { type: string; metadata: Record<string, string> }[] };
    expect(so.scaleTargetRef.name).toBe(worker.metadata.name);
    expect(so.triggers.find((t) => t.type === 'prometheus')?.metadata.query).toMatch(/icm_chips_remaining/);
    // Tile jobs wait in one consumer per lane: a JetStream trigger (one consumer each) would see
    // a part of the backlog. Should one come back, it must name a consumer ensureTopology creates.
    const prefix = flagsOf('k8s Deployment/icm-worker')['nats-prefix'];
    const n = names(typeof prefix === 'string' ? prefix : undefined);
    const lanes = Array.from({ length: JOB_LANES }, (_, l) => n.laneConsumer(l));
    for (const t of so.triggers.filter((x) => x.type === 'nats-jetstream')) {
      expect(t.metadata.stream).toBe(n.jobsStream);
      expect(lanes).toContain(t.metadata.consumer);
    }
  });

  it('scrapes annotated pods of the namespace on their annotated port', () => {
    type Relabel = { source_labels?: string[]; action?: string; regex?: string; replacement?: string; target_label?: string; separator?: string };
    const cm = k8s('ConfigMap', 'prometheus-icm-scrape');
    const config = parse(cm.data!['prometheus.yml']) as { scrape_configs: { kubernetes_sd_configs: { role: string; namespaces: { names: string[] } }[]; relabel_configs: Relabel[] }[] };
    const job = config.scrape_configs[0];
    expect(job.kubernetes_sd_configs[0]).toMatchObject({ role: 'pod', namespaces: { names: [namespace] } });
    // Apply the relabelling to a discovered worker pod, as Prometheus would (anchored regexes).
    const labels: Record<string, string> = {
      __address__: '10.1.2.3',
      __metrics_path__: '/metrics',
      __meta_kubernetes_pod_annotation_prometheus_io_scrape: 'true',
      ...Object.fromEntries(Object.entries(podTemplate(worker).metadata!.annotations!).map(([k, v]) => [`__meta_kubernetes_pod_annotation_${k.replace(/[^a-zA-Z0-9]/g, '_')}`, v])),
    };
    for (const r of job.relabel_configs) {
      const value = (r.source_labels ?? []).map((l) => labels[l] ?? '').join(r.separator ?? ';');
      const m = new RegExp(`^(?:${r.regex ?? '(.*)'})$`).exec(value);
      if ((r.action ?? 'replace') === 'keep') expect(m, 'the annotated pod is kept').not.toBeNull();
      else if (m && r.target_label) labels[r.target_label] = (r.replacement ?? '$1').replace(/\$(\d)/g, (_, i: string) => m[Number(i)] ?? '');
    }
    expect(labels.__address__).toBe(`10.1.2.3:${String(flagsOf('k8s Deployment/icm-worker')['metrics-port'])}`);
    expect(labels.__metrics_path__).toBe('/metrics');
  });
});

describe('Dockerfile', () => {
  const dockerfile = read('deploy/Dockerfile').replace(/\\\n/g, ' ');
  const stages = dockerfile.split(/^FROM\s+/m).slice(1);
  const finalStage = stages[stages.length - 1];
  const instructions = (stage: string, op: string): string[] =>
    [...stage.matchAll(new RegExp(`^${op}\\s+(.+)$`, 'gm'))].map((m) => m[1].trim());

  it('builds with npm ci and the .npmrc, compiles, prunes dev dependencies and other platforms\' onnxruntime binaries', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const build = stages[0];
    expect(instructions(build, 'COPY').some((c) => c.includes('.npmrc'))).toBe(true);
    expect(build.indexOf('.npmrc')).toBeLessThan(build.indexOf('npm ci'));
    expect(build.indexOf('npm ci')).toBeLessThan(build.indexOf('npm run build'));
    expect(build.indexOf('npm run build')).toBeLessThan(build.indexOf('npm prune --omit=dev'));
    for (const platform of ['darwin', 'win32']) expect(build).toMatch(new RegExp(`rm -rf [^&]*node_modules/onnxruntime-node/bin/napi-v\\*/${platform}\\b`));
    // What the build stage deletes is where the package keeps those binaries.
    const ortBin = path.join(REPO_ROOT, 'node_modules', 'onnxruntime-node', 'bin');
    const napi = readdirSync(ortBin).filter((d) => d.startsWith('napi-v'));
    expect(napi.length).toBeGreaterThan(0);
    for (const d of napi) expect(readdirSync(path.join(ortBin, d))).toEqual(expect.arrayContaining(['darwin', 'linux', 'win32']));
  });

  it('has no tsx among the production dependencies (the image runs compiled JavaScript)', () => {
    const pkg = JSON.parse(read('package.json')) as { dependencies: Record<string, string>; devDependencies: Record<string, string>; scripts: Record<string, string> };
    expect(Object.keys(pkg.dependencies)).not.toContain('tsx');
    expect(Object.keys(pkg.devDependencies)).toContain('tsx');
    expect(pkg.scripts.build).toBeDefined();
  });

  it('runs a maintained Node LTS (22 or 24) as a non-root user', () => {
    expect(finalStage).toMatch(/^node:(22|24)(\.\d+)*(-slim)?\s/);
    expect(stages[0]).toMatch(/^node:(22|24)(\.\d+)*(-slim)?\s/);
    const users = instructions(finalStage, 'USER');
    expect(users.length).toBeGreaterThan(0);
    const user = users[users.length - 1].split(':')[0];
    expect(['root', '0']).not.toContain(user);
  });

  it('sets glibc malloc tunables that glibc accepts (it ignores an mmap threshold above 32 MiB without a word)', () => {
    const env = instructions(finalStage, 'ENV').join(' ');
    const tunables = /\bGLIBC_TUNABLES=(\S+)/.exec(env)?.[1];
    expect(tunables, 'ENV GLIBC_TUNABLES in the runtime stage').toBeDefined();
    const settings = Object.fromEntries(tunables!.split(':').map((kv) => kv.split('=') as [string, string]));
    expect(Object.keys(settings).sort()).toEqual(['glibc.malloc.mmap_threshold', 'glibc.malloc.trim_threshold']);
    const mmap = Number(settings['glibc.malloc.mmap_threshold']);
    expect(Number.isInteger(mmap) && mmap > 0 && mmap <= 32 * 1024 * 1024).toBe(true);
    expect(Number(settings['glibc.malloc.trim_threshold'])).toBeGreaterThanOrEqual(mmap);
  });

  it('starts the compiled entry: the build output of cli/bin.ts, copied into the runtime stage', () => {
    const workdir = instructions(finalStage, 'WORKDIR').pop();
    const entrypoint = JSON.parse(instructions(finalStage, 'ENTRYPOINT').pop()!) as string[];
    expect(entrypoint[0]).toBe('node');
    expect(workdir).toBe('/app');
    const build = JSON.parse(read('tsconfig.build.json').replace(/^\s*\/\/.*$/gm, '')) as { compilerOptions: { outDir: string; rootDir: string } };
    // tsc writes cli/bin.ts to <outDir>/cli/bin.js (rootDir is the repo root).
    expect(build.compilerOptions.rootDir).toBe('.');
    expect(entrypoint[1]).toBe(`${build.compilerOptions.outDir}/cli/bin.js`);
    expect(existsSync(path.join(REPO_ROOT, 'cli', 'bin.ts'))).toBe(true);
    const copies = instructions(finalStage, 'COPY');
    for (const what of ['dist', 'node_modules', 'models', 'package.json']) expect(copies).toContain(`--from=build /app/${what} ./${what}`);
    expect(copies.join(' '), 'no sources in the runtime stage').not.toMatch(/\/app \/app|cli|worker|shared/);
  });

  it('keeps every file the CLI imports, the models and the lockfile in the build context', () => {
    const ignored = dockerIgnore(read('deploy/Dockerfile.dockerignore'));
    const needed = [...importGraph('bin/improve-cloud-mask.mjs'), ...importGraph('cli/bin.ts'), 'package.json', 'package-lock.json', '.npmrc', 'tsconfig.json', 'tsconfig.build.json', 'scripts/build.mjs'];
    const models = readdirSync(path.join(REPO_ROOT, 'models')).map((f) => `models/${f}`);
    expect(models.some((f) => f.endsWith('.onnx'))).toBe(true);
    expect(needed).toContain('worker/chip-thread-entry.mjs');
    expect([...needed, ...models].filter(ignored)).toEqual([]);
    expect(ignored('node_modules/tsx/package.json')).toBe(true);
    expect(ignored('dist/cli/bin.js'), 'dist/ is built inside the image').toBe(true);
    expect(ignored('test/deploy.test.ts')).toBe(true);
  });
});

/** Repo-relative files reachable from `entry` through relative imports, dynamic imports and `new URL('./x', import.meta.url)`. */
function importGraph(entry: string): string[] {
  const seen = new Set<string>();
  const visit = (rel: string): void => {
    // dist/ is built inside the image, never taken from the context.
    if (seen.has(rel) || rel.startsWith('dist/') || !existsSync(path.join(REPO_ROOT, rel))) return;
    seen.add(rel);
    const text = read(rel);
    const specs = [...text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+|new URL\(\s*)'(\.\.?\/[^']+)'/g)].map((m) => m[1]);
    for (const spec of specs) visit(path.relative(REPO_ROOT, path.resolve(REPO_ROOT, path.dirname(rel), spec)));
  };
  visit(entry);
  return [...seen];
}

/** A .dockerignore as a predicate on repo-relative paths (patterns match a path or any parent; `!` re-includes; last match wins). */
function dockerIgnore(text: string): (rel: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = (negate ? l.slice(1) : l).replace(/^\/+|\/+$/g, '');
      const source = pattern
        .split(/(\*\*\/|\*\*|\*|\?)/)
        .map((part) => ({ '**/': '(?:.*/)?', '**': '.*', '*': '[^/]*', '?': '[^/]' })[part] ?? part.replace(/[.+^${}()|[\]\\]/g, '\\$&'))
        .join('');
      return { negate, re: new RegExp(`^${source}$`) };
    });
  return (rel) => {
    const parts = rel.split('/');
    const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let ignored = false;
    for (const r of rules) if (candidates.some((c) => r.re.test(c))) ignored = !r.negate;
    return ignored;
  };
}

// ---- kustomize ----
/** Kinds that have no namespace (kustomize renames a Namespace object to the target namespace). */
const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition', 'PersistentVolume', 'StorageClass', 'PriorityClass']);

/** The containers of a workload's pod template, init containers included (none where it has no pods). */
function podContainers(doc: K8sDoc): K8sContainer[] {
  const spec = doc.spec as { template?: PodTemplate; jobTemplate?: { spec: { template: PodTemplate } } } | undefined;
  const pod = (spec?.template ?? spec?.jobTemplate?.spec.template)?.spec as (PodTemplate['spec'] & { initContainers?: K8sContainer[] }) | undefined;
  return pod ? [...(pod.initContainers ?? []), ...pod.containers] : [];
}

/**
 * What `kustomize build` does with our kind of kustomization: every namespaced resource moved to
 * `namespace` (the Namespace object renamed to it), and every container image whose name matches
 * an `images` entry given its newName and newTag. Enough for our manifests; not all of kustomize.
 */
function applyKustomization(k: Pick<Kustomization, 'namespace' | 'images'>, docs: K8sDoc[]): K8sDoc[] {
  return docs.map((original) => {
    const doc = structuredClone(original);
    if (k.namespace) {
      if (doc.kind === 'Namespace') doc.metadata.name = k.namespace;
      else if (!CLUSTER_SCOPED.has(doc.kind)) doc.metadata.namespace = k.namespace;
    }
    for (const c of podContainers(doc)) {
      const [name, tag] = c.image.split(/:(?=[^/]*$)/);
      const rule = (k.images ?? []).find((i) => i.name === name);
      if (rule) c.image = `${rule.newName ?? name}:${rule.newTag ?? tag ?? 'latest'}`;
    }
    return doc;
  });
}

const withoutFile = (docs: (K8sDoc & { file?: string })[]): K8sDoc[] => docs.map(({ file: _file, ...doc }) => doc as K8sDoc);
const byKindAndName = (docs: K8sDoc[]): K8sDoc[] => [...docs].sort((a, b) => `${a.kind}/${a.metadata.name}`.localeCompare(`${b.kind}/${b.metadata.name}`));
const kubectl = '/usr/bin/kubectl';

describe('kustomization', () => {
  const OVERRIDE = { namespace: 'cloud-masks', images: [{ name: 'improve-cloud-mask', newName: 'registry.example.com/icm', newTag: '0.1.0' }] };

  it('lists every manifest of deploy/k8s once', () => {
    const files = readdirSync(K8S_DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
    expect([...kustomization.resources].sort()).toEqual(files.sort());
    expect(kustomization.namespace).toBe(k8s('Namespace').metadata.name);
  });

  it('names the image the manifests use, so an override reaches every container of ours', () => {
    const image = kustomization.images?.find((i) => i.name === IMAGE.split(':')[0]);
    expect(image).toBeDefined();
    // As shipped, it changes nothing.
    expect(applyKustomization(kustomization, withoutFile(k8sDocs))).toEqual(withoutFile(k8sDocs));
  });

  it('with another namespace and image: every resource in that namespace, every container of ours on that image', () => {
    const built = applyKustomization(OVERRIDE, withoutFile(k8sDocs));
    expect(built.find((d) => d.kind === 'Namespace')?.metadata.name).toBe('cloud-masks');
    for (const d of built.filter((d) => !CLUSTER_SCOPED.has(d.kind))) expect(d.metadata.namespace, `${d.kind}/${d.metadata.name}`).toBe('cloud-masks');
    const ours = built.flatMap(podContainers).filter((c) => c.image.startsWith('registry.example.com/'));
    expect(ours.map((c) => c.image)).toEqual(ourContainers.map(() => 'registry.example.com/icm:0.1.0'));
    // Others' images (NATS) stay as they are.
    expect(built.flatMap(podContainers).find((c) => c.image.startsWith('nats:'))).toBeDefined();
  });

  it.skipIf(!existsSync(kubectl))('builds with kubectl kustomize to the same resources, also with an overlay that overrides namespace and image', () => {
    const build = (dir: string): K8sDoc[] => byKindAndName(parseAllDocuments(execFileSync(kubectl, ['kustomize', dir], { encoding: 'utf8' })).map((d) => d.toJS() as K8sDoc));
    expect(build(K8S_DIR)).toEqual(byKindAndName(applyKustomization(kustomization, withoutFile(k8sDocs))));
    // kustomize takes bases by relative path only: the overlay lives inside the repo.
    mkdirSync(path.join(REPO_ROOT, '.cache'), { recursive: true });
    const overlay = mkdtempSync(path.join(REPO_ROOT, '.cache', 'kustomize-overlay-'));
    try {
      writeFileSync(path.join(overlay, 'kustomization.yaml'), stringify({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources: [path.relative(overlay, K8S_DIR)], ...OVERRIDE }));
      expect(build(overlay)).toEqual(byKindAndName(applyKustomization(OVERRIDE, withoutFile(k8sDocs))));
    } finally {
      rmSync(overlay, { recursive: true, force: true });
    }
  });

  it('has a PodMonitor that selects the coordinator and worker pods on their metrics port', () => {
    const pm = k8s('PodMonitor');
    expect(pm.apiVersion).toBe('monitoring.coreos.com/v1');
    const spec = pm.spec as { selector: { matchLabels: Record<string, string> }; podMetricsEndpoints: { port: string; path?: string }[] };
    for (const { workload, container } of ourContainers) {
      const labels = podTemplate(workload).metadata as { labels?: Record<string, string> } | undefined;
      expect(labels?.labels ?? {}, `${workload.kind}/${workload.metadata.name}`).toMatchObject(spec.selector.matchLabels);
      const port = container.ports?.find((p) => p.name === spec.podMetricsEndpoints[0].port);
      expect(port?.containerPort).toBe(Number(flagsOf(`k8s ${workload.kind}/${workload.metadata.name}`)['metrics-port']));
    }
    expect(spec.podMetricsEndpoints[0].path ?? '/metrics').toBe('/metrics');
  });
});

// ---- the compiled build ----
describe('compiled build (what the image runs)', () => {
  // Inside the repo, so the build finds node_modules, package.json and models/ as dist/ would.
  const BUILD = path.join(REPO_ROOT, '.cache', 'build-test');
  const ENTRY = path.join(BUILD, 'dist', 'cli', 'bin.js');
  let tmp: string;

  beforeAll(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'icm-build-'));
    rmSync(BUILD, { recursive: true, force: true });
    const tsc = path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', path.join(BUILD, 'dist')], { cwd: REPO_ROOT, stdio: 'pipe' });
  }, 300_000);
  afterAll(() => {
    rmSync(BUILD, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
  });

  it('runs --help, --version and describe --json like the sources, loading no TypeScript and no tsx', async () => {
    for (const [i, args] of [['--help'], ['--version'], ['describe', '--json'], ['worker', '--help']].entries()) {
      const rec = loadRecorder(path.join(tmp, `rec-${i}`));
      const [built, sources] = await Promise.all([runCli(args, { entry: ENTRY, nodeArgs: rec.nodeArgs, env: rec.env }), runCli(args)]);
      expect(built.code, `${args.join(' ')}: ${built.stderr}`).toBe(0);
      expect(built.stdout).toBe(sources.stdout);
      const loaded = rec.loaded();
      expect(loaded.some((u) => u.includes('/build-test/dist/cli/main.js'))).toBe(true);
      expect(loaded.filter((u) => u.endsWith('.ts') || u.includes('/node_modules/tsx/'))).toEqual([]);
    }
  });

  it('runs a scene in its chip threads from the compiled JavaScript, with the same mask as the sources', async () => {
    const rec = loadRecorder(path.join(tmp, 'rec-run'));
    const args = (out: string): string[] => ['run', '--s2-raster', SAMPLE_SCENE, '--product-mask', 'scl', '--out', out, '--threads', '1', '--quiet'];
    const [built, sources] = await Promise.all([
      runCli(args(path.join(tmp, 'built.tif')), { entry: ENTRY, nodeArgs: rec.nodeArgs, env: rec.env }),
      runCli(args(path.join(tmp, 'sources.tif'))),
    ]);
    expect(built.code, built.stderr).toBe(0);
    expect(sources.code, sources.stderr).toBe(0);
    const loaded = rec.loaded();
    expect(loaded.some((u) => u.includes('/build-test/dist/worker/chip-thread.js')), 'a chip thread loaded the compiled task').toBe(true);
    expect(loaded.filter((u) => u.endsWith('.ts') || u.includes('/node_modules/tsx/'))).toEqual([]);
    const pixels = async (f: string): Promise<Buffer> => Buffer.from(((await (await (await fromFile(f)).getImage()).readRasters({ interleave: false })) as unknown as Uint8Array[])[0]);
    expect((await pixels(path.join(tmp, 'built.tif'))).equals(await pixels(path.join(tmp, 'sources.tif')))).toBe(true);
  }, 300_000);
});
