/** `/metrics`, `/healthz`, `/readyz` on --metrics-host:--metrics-port. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { CloudMaskError } from '../shared/errors.ts';
import type { Flags } from './options.ts';

export interface MetricsServer {
  registry: Registry;
  url: string | null;
  setReady(ready: boolean): void;
  close(): Promise<void>;
}

/** A registry with the default process metrics, served when --metrics-port is given. */
export async function startMetrics(flags: Flags, log: (line: string) => void): Promise<MetricsServer> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  let ready = false;
  const portFlag = flags['metrics-port'];
  if (portFlag === undefined) return { registry, url: null, setReady: (r) => void (ready = r), close: async () => {} };
  const port = Number(portFlag);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new CloudMaskError('BAD_OPTION', `--metrics-port must be a port number, got ${String(portFlag)}`);
  const host = typeof flags['metrics-host'] === 'string' ? flags['metrics-host'] : '127.0.0.1';
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (url === '/metrics') {
      registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
        (err) => res.writeHead(500).end(String(err)),
      );
    } else if (url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (url === '/readyz') {
      res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ready\n' : 'not ready\n');
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new CloudMaskError('BAD_OPTION', `--metrics-port ${port}: ${err.message}`)));
    server.listen(port, host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const url = `http://${host}:${addr.port}`;
  log(`metrics on ${url}/metrics`);
  return {
    registry,
    url,
    setReady: (r) => void (ready = r),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
