// A state machine's transition check, from its table: the one place each of
// wsgate's machines (the connection's, the exchange's) changes state goes
// through it, and a change not in the table is a contained WSG_ERR_INTERNAL.

import { WsgateError } from './errors.js';

/**
 * The check for one machine: `check(current, next)` returns `next`, or throws
 * WSG_ERR_INTERNAL naming both states when `table[current]` does not list it.
 */
export function transitions<S extends number>(machine: string, names: readonly string[], table: Readonly<Record<S, readonly S[]>>): (current: S, next: S) => S {
  return (current, next) => {
    if (!table[current].includes(next)) {
      throw new WsgateError('WSG_ERR_INTERNAL', `${machine} ${names[current]} -> ${names[next]} is not allowed`);
    }
    return next;
  };
}
