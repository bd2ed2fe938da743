/** NATS flags -> a connected JetStream transport for the coordinator or a worker. */
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats, type NatsOptions } from '../transport/connect.ts';
import { ensureTopology, type JetStreamOptions } from '../transport/jetstream.ts';
import { CloudMaskError } from '../shared/errors.ts';
import { SUBJECT_PREFIX } from '../shared/subjects.ts';
import { closeWithin } from '../transport/connect.ts';
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

/** --nats-prefix, checked as an option (shared/subjects.ts would throw a RangeError later, after connecting). */
export function prefixFromFlags(flags: Flags): string | undefined {
  const prefix = flags['nats-prefix'];
  if (prefix === undefined) return undefined;
  if (typeof prefix !== 'string' || !SUBJECT_PREFIX.test(prefix)) {
    throw new CloudMaskError('BAD_OPTION', `--nats-prefix must match [A-Za-z0-9_-]+ (it becomes one subject token and part of stream names), got ${JSON.stringify(prefix)}`);
  }
  return prefix;
}

export function jetStreamOptionsFromFlags(flags: Flags, log: (line: string) => void): JetStreamOptions {
  return {
    prefix: prefixFromFlags(flags),
    ackWaitMs: positiveInt(flags, 'ack-wait-ms', 30_000),
    maxDeliveries: positiveInt(flags, 'max-deliveries', 4),
    onBadMessage: (subject, error) => log(`rejected a malformed message on ${subject}: ${error.message}`),
  };
}

export async function openCluster(flags: Flags, name: string, log: (line: string) => void): Promise<{ nc: NatsConnection; js: JetStreamOptions }> {
  // Options first: a bad one must fail before there is a connection to keep the process alive.
  const js = jetStreamOptionsFromFlags(flags, log);
  const nc = await connectNats(natsOptionsFromFlags(flags, name));
  try {
    await ensureTopology(nc, js);
  } catch (err) {
    await closeWithin(nc, 2000);
    throw err;
  }
  return { nc, js };
}
