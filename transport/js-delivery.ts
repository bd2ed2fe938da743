/**
 * A JetStream message as a delivery (tile jobs and scene jobs alike): ack, nak, term and
 * working() on the message, the first of ack / nak / term ending the delivery exactly once.
 */
import type { JsMsg } from '@nats-io/jetstream';

export interface JsDelivery<J> {
  readonly job: J;
  readonly deliveries: number;
  ack(): Promise<void>;
  nak(delayMs: number): Promise<void>;
  working(): Promise<void>;
  /** The reason, if any, travels elsewhere (a failure outcome, a scene record): nats-server 2.9 does not parse "+TERM <reason>". */
  term(reason?: unknown): Promise<void>;
}

/** `onEnd` runs once, when the delivery is first acked, nak'ed or termed. */
export function jsDelivery<J>(m: JsMsg, job: J, onEnd: () => void): JsDelivery<J> {
  let ended = false;
  const end = (): void => {
    if (ended) return;
    ended = true;
    onEnd();
  };
  return {
    job,
    deliveries: m.info.deliveryCount,
    ack: async () => {
      end();
      await m.ackAck().catch(() => false);
    },
    nak: async (delayMs) => {
      end();
      m.nak(delayMs);
    },
    working: async () => m.working(),
    term: async () => {
      end();
      m.term();
    },
  };
}
