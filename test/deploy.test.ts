/**
 * The deployment files (deploy/) against the code: the commands parse with the CLI's own option
 * table, ports and names agree across compose, Prometheus, Kubernetes and KEDA, NATS allows the
 * largest message, the image runs as non-root and contains everything the CLI imports.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { OPTIONS } from '../cli/main.ts';
import { MAX_MESSAGE_BYTES } from '../shared/messages.ts';
import { names } from '../shared/subjects.ts';
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
const k8sDocs: (K8sDoc & { file: string })[] = readdirSync(K8S_DIR)
  .filter((f) => f.endsWith('.yaml'))
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

/** Parses argv exactly as cli/main.ts does; throws on an unknown flag or a missing value. */
function cli(argv: string[]): { command: string; flags: Record<string, string | boolean | string[] | undefined> } {
  const [command, ...rest] = argv;
  const { values } = parseArgs({ args: rest, options: OPTIONS, strict: true, allowPositionals: false });
  return { command, flags: values };
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
    expect(read('cli/main.ts')).toContain(`case '${command}':`);
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
    expect(natsSetting('store_dir')).toMatch(/^\/data\//);
    expect(compose.services.nats.volumes).toContain('nats-data:/data');
    const sts = k8s('StatefulSet', 'nats');
    const claim = (sts.spec as { volumeClaimTemplates: { metadata: { name: string }; spec: { resources: { requests: { storage: string } } } }[] }).volumeClaimTemplates[0];
    const mount = podTemplate(sts).spec.containers[0] as K8sContainer & { volumeMounts: { name: string; mountPath: string }[] };
    expect(mount.volumeMounts.find((m) => m.name === claim.metadata.name)?.mountPath).toBe('/data');
    expect(natsSize(natsSetting('max_file_store'))).toBeLessThan(quantity(claim.spec.resources.requests.storage));
  });

  it('is the config the Kubernetes ConfigMap carries', () => {
    expect(k8s('ConfigMap', 'nats-config').data!['nats.conf']).toBe(natsConf);
  });

  it.skipIf(!existsSync('/usr/sbin/nats-server'))('is a config nats-server accepts', () => {
    execFileSync('/usr/sbin/nats-server', ['-t', '-c', path.join(REPO_ROOT, 'deploy/nats.conf')], { stdio: 'pipe' });
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

  it('scales the worker Deployment on the jobs stream and the workers consumer (KEDA)', () => {
    const so = k8s('ScaledObject', 'icm-worker').spec as { scaleTargetRef: { name: string }; triggers: { type: string; metadata: Record<string, string> }[] };
    expect(so.scaleTargetRef.name).toBe(worker.metadata.name);
    const prefix = flagsOf('k8s Deployment/icm-worker')['nats-prefix'];
    const n = names(typeof prefix === 'string' ? prefix : undefined);
    const trigger = so.triggers.find((t) => t.type === 'nats-jetstream')!;
    expect(trigger.metadata).toMatchObject({
      natsServerMonitoringEndpoint: `${natsService.metadata.name}.${namespace}.svc.cluster.local:${servicePort('monitor')}`,
      account: '$G',
      stream: n.jobsStream,
      consumer: n.workersConsumer,
    });
    expect(Number(trigger.metadata.lagThreshold)).toBeGreaterThan(0);
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

  it('builds with npm ci and the .npmrc, then prunes dev dependencies', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const build = stages[0];
    expect(instructions(build, 'COPY').some((c) => c.includes('.npmrc'))).toBe(true);
    expect(build.indexOf('.npmrc')).toBeLessThan(build.indexOf('npm ci'));
    expect(build).toMatch(/npm prune --omit=dev/);
  });

  it('runs node 20 as a non-root user', () => {
    expect(finalStage).toMatch(/^node:20(-slim)?\s/);
    const users = instructions(finalStage, 'USER');
    expect(users.length).toBeGreaterThan(0);
    const user = users[users.length - 1].split(':')[0];
    expect(['root', '0']).not.toContain(user);
  });

  it('starts the bin that exists in the repo', () => {
    const workdir = instructions(finalStage, 'WORKDIR').pop();
    const entrypoint = JSON.parse(instructions(finalStage, 'ENTRYPOINT').pop()!) as string[];
    expect(entrypoint[0]).toBe('node');
    expect(workdir).toBe('/app');
    expect(instructions(finalStage, 'COPY')).toContain('--from=build /app /app');
    expect(existsSync(path.join(REPO_ROOT, entrypoint[1]))).toBe(true);
  });

  it('keeps every file the CLI imports, the models and the lockfile in the build context', () => {
    const ignored = dockerIgnore(read('deploy/Dockerfile.dockerignore'));
    const needed = [...importGraph('bin/improve-cloud-mask.mjs'), 'package.json', 'package-lock.json', '.npmrc', 'tsconfig.json'];
    const models = readdirSync(path.join(REPO_ROOT, 'models')).map((f) => `models/${f}`);
    expect(models.some((f) => f.endsWith('.onnx'))).toBe(true);
    expect(needed).toContain('worker/chip-thread-entry.mjs');
    expect([...needed, ...models].filter(ignored)).toEqual([]);
    expect(ignored('node_modules/tsx/package.json')).toBe(true);
    expect(ignored('test/deploy.test.ts')).toBe(true);
  });
});

/** Repo-relative files reachable from `entry` through relative imports, dynamic imports and `new URL('./x', import.meta.url)`. */
function importGraph(entry: string): string[] {
  const seen = new Set<string>();
  const visit = (rel: string): void => {
    if (seen.has(rel) || !existsSync(path.join(REPO_ROOT, rel))) return;
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
