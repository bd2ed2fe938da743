/**
 * Connecting to NATS with the options an operator needs: user/password, token, creds or nkey
 * file, TLS. Reconnects forever: a restarted server must not end a run.
 */
import { readFileSync } from 'node:fs';
import { connect, credsAuthenticator, nkeyAuthenticator, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { CloudMaskError } from '../shared/errors.ts';

export interface NatsOptions {
  /** Comma-separated server URLs, e.g. nats://127.0.0.1:4222. */
  servers: string;
  user?: string;
  pass?: string;
  token?: string;
  /** A .creds file (JWT + nkey seed). */
  credsFile?: string;
  /** A file holding an nkey seed. */
  nkeyFile?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** Connection name shown in the server's monitoring. */
  name?: string;
}

function readFileOr(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new CloudMaskError('BAD_OPTION', `${what} ${file}: ${(err as Error).message}`);
  }
}

export async function connectNats(options: NatsOptions): Promise<NatsConnection> {
  const opts: ConnectionOptions = {
    servers: options.servers.split(',').map((s) => s.trim()),
    name: options.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    waitOnFirstConnect: false,
  };
  if (options.user) Object.assign(opts, { user: options.user, pass: options.pass });
  if (options.token) opts.token = options.token;
  if (options.credsFile) opts.authenticator = credsAuthenticator(new Uint8Array(readFileOr(options.credsFile, '--nats-creds')));
  else if (options.nkeyFile) opts.authenticator = nkeyAuthenticator(new TextEncoder().encode(readFileOr(options.nkeyFile, '--nats-nkey').toString('utf8').trim()));
  if (options.tlsCa || options.tlsCert) {
    opts.tls = {
      caFile: options.tlsCa,
      certFile: options.tlsCert,
      keyFile: options.tlsKey,
    };
  }
  try {
    return await connect(opts);
  } catch (err) {
    const message = (err as Error).message;
    // Wrong credentials will not get better by retrying; an unreachable server might.
    const code = /authori[sz]ation|authentication|permission/i.test(message) ? 'BAD_OPTION' : 'TRANSIENT_IO';
    throw new CloudMaskError(code, `cannot connect to NATS at ${options.servers}: ${message}`);
  }
}
