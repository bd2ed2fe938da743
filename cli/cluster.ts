/** NATS flags -> a connected JetStream transport for the coordinator or a worker. */
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats, type NatsOptions } from '../transport/connect.ts';
import { ensureTopology, type JetStreamOptions } from '../transport/jetstream.ts';
import { positiveInt, type Flags } from './options.ts';

export function natsOptionsFromFlags(flags: Flags, name: string): NatsOptions {
  const s = (k: string): string | undefined => (typeof flags[k] === 'string' ? (flags[k] as string) : undefined);
  return {
    servers: s('nats') ?? 'nats://127.0.0.1:4222',
    user: s('nats-user'),
    pass: s('nats-pass'),
    token: s('nats-token'),
    credsFile: s('nats-creds'),
    nkeyFile: s('nats-nkey'),
    tlsCa: s('nats-tls-ca'),
    tlsCert: s('nats-tls-cert'),
    tlsKey: s('nats-tls-key'),
    name,
  };
}

export function jetStreamOptionsFromFlags(flags: Flags, log: (line: string) => void): JetStreamOptions {
  return {
    prefix: typeof flags['nats-prefix'] === 'string' ? flags['nats-prefix'] : undefined,
    ackWaitMs: positiveInt(flags, 'ack-wait-ms', 30_000),
    maxDeliveries: positiveInt(flags, 'max-deliveries', 4),
    onBadMessage: (subject, error) => log(`rejected a malformed message on ${subject}: ${error.message}`),
  };
}

export async function openCluster(flags: Flags, name: string, log: (line: string) => void): Promise<{ nc: NatsConnection; js: JetStreamOptions }> {
  const nc = await connectNats(natsOptionsFromFlags(flags, name));
  const js = jetStreamOptionsFromFlags(flags, log);
  await ensureTopology(nc, js);
  return { nc, js };
}
