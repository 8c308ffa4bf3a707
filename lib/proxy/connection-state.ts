// The client connection's state machine: its states, the changes allowed
// between them, and what its one timer stands for.
//
//   READING_HEAD -> (validate, route) -> PROXYING (an Exchange) -+-> READING_HEAD (keep-alive)
//                                                                +-> TUNNEL (valid 101)
//                                                                +-> LINGERING -> CLOSED
//   READING_HEAD, PROXYING -> CLOSED (the client went away, or was cut)

import { transitions } from '../core/state-machine.js';

export const ConnState = {
  ReadingHead: 0,
  Proxying: 1,
  Tunnel: 2,
  Lingering: 3,
  Closed: 4,
} as const;
export type ConnState = (typeof ConnState)[keyof typeof ConnState];
const STATE_NAMES = ['READING_HEAD', 'PROXYING', 'TUNNEL', 'LINGERING', 'CLOSED'] as const;

/**
 * The changes allowed. TUNNEL and CLOSED are terminal for the Connection
 * object (a tunnel owns the socket from then on); a connection that failed
 * answers and lingers, or is cut and closed.
 */
const TRANSITIONS: Readonly<Record<ConnState, readonly ConnState[]>> = {
  [ConnState.ReadingHead]: [ConnState.Proxying, ConnState.Lingering, ConnState.Closed],
  [ConnState.Proxying]: [ConnState.ReadingHead, ConnState.Tunnel, ConnState.Lingering, ConnState.Closed],
  [ConnState.Tunnel]: [],
  [ConnState.Lingering]: [ConnState.Closed],
  [ConnState.Closed]: [],
};

/** `next` after `current`, or WSG_ERR_INTERNAL when that change is not in the table. */
export const nextState = transitions<ConnState>('connection state', STATE_NAMES, TRANSITIONS);

/** What the connection's one timer stands for, named when it is armed (never worked out at expiry). */
export const ConnTimeout = {
  None: 0,
  /** A request head is being read (or the first is awaited from accept): 408 when it fires (headTimeout). */
  Head: 1,
  /** Idle between requests on a keep-alive connection: closed quietly (keepAliveTimeout). */
  KeepAlive: 2,
  /** Reading and discarding after the last response, before closing (nginx lingering_timeout). */
  Linger: 3,
} as const;
export type ConnTimeout = (typeof ConnTimeout)[keyof typeof ConnTimeout];
