/**
 * The thread that carries a chip thread's range requests (see {@link useIoThread} in
 * http-range.ts): each message is one request, run with the usual retries, answered with its
 * body (transferred, not copied) or its error as data, and this thread's counters so far.
 */
import { parentPort } from 'node:worker_threads';
import { toErrorData } from '../shared/errors.ts';
import { httpRequest, httpStats, type IoThreadAnswer, type IoThreadRequest } from './http-range.ts';

const port = parentPort!;
port.on('message', (m: IoThreadRequest) => {
  httpRequest(m.req, m.options).then(
    ({ body }) => {
      const answer: IoThreadAnswer = { id: m.id, body, stats: httpStats() };
      port.postMessage(answer, [body.buffer as ArrayBuffer]);
    },
    (err: unknown) => port.postMessage({ id: m.id, error: toErrorData(err), stats: httpStats() } satisfies IoThreadAnswer),
  );
});
