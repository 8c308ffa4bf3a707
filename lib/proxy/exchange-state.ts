// The exchange's state machine: its phases, the changes allowed between them,
// and what its one timer stands for.
//
//   DIALING (or a pooled socket) -> AWAITING_RESPONSE -> RELAYING_BODY -> DONE
//                     ^                  |  \-> (valid 101 to a WebSocket request) -> DONE, both sockets in a Tunnel
//                     +------------------+ (a dead pooled connection: replayed once)
//   any phase -> FAILED (an error answered or cut, or the client went away)

import { transitions } from '../core/state-machine.js';

export const ExchangePhase = {
  Dialing: 0,
  AwaitingResponse: 1,
  RelayingBody: 2,
  /** Terminal: the response was relayed whole, or the 101 handed both sockets to a tunnel. */
  Done: 3,
  /** Terminal: an error ended it (answered or cut by the connection), or the client went away. */
  Failed: 4,
} as const;
export type ExchangePhase = (typeof ExchangePhase)[keyof typeof ExchangePhase];
const PHASE_NAMES = ['DIALING', 'AWAITING_RESPONSE', 'RELAYING_BODY', 'DONE', 'FAILED'] as const;

/** The changes allowed (a dead pooled connection is replayed once: AWAITING_RESPONSE -> DIALING). */
const TRANSITIONS: Readonly<Record<ExchangePhase, readonly ExchangePhase[]>> = {
  [ExchangePhase.Dialing]: [ExchangePhase.AwaitingResponse, ExchangePhase.Failed],
  [ExchangePhase.AwaitingResponse]: [ExchangePhase.Dialing, ExchangePhase.RelayingBody, ExchangePhase.Done, ExchangePhase.Failed],
  [ExchangePhase.RelayingBody]: [ExchangePhase.Done, ExchangePhase.Failed],
  [ExchangePhase.Done]: [],
  [ExchangePhase.Failed]: [],
};

/** `next` after `current`, or WSG_ERR_INTERNAL when that change is not in the table. */
export const nextPhase = transitions<ExchangePhase>('exchange phase', PHASE_NAMES, TRANSITIONS);

/**
 * What the exchange's timer stands for, named where the wait begins. The
 * timer is armed once per connection attempt; the kind says which limit
 * applies when it fires, so a turn changing sides costs no re-arm.
 */
export const ExchangeTimeout = {
  None: 0,
  /** The upstream connect (connectTimeout, 504). */
  Connect: 1,
  /** The upstream's turn: it owes response bytes (readTimeout, nginx proxy_read_timeout; 504). */
  Read: 2,
  /** The client's turn: it owes request body, or cannot take response bytes (sendTimeout, nginx proxy_send_timeout; cut). */
  Send: 3,
} as const;
export type ExchangeTimeout = (typeof ExchangeTimeout)[keyof typeof ExchangeTimeout];
