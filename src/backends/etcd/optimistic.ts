import type { ICompare, IRequestOp } from 'etcd3';
import { UnavailableError } from '../../protocol/errors.js';
import type { Store } from './store.js';

/** Races a transition may lose in a row before giving up: each loss means another process moved on. */
export const MAX_ROUNDS = 10_000;

/** What a round decided from its read: nothing to write (`done`), or a transaction and its result once committed. */
export type Decision<T> = { done: T } | { compare: ICompare[]; success: IRequestOp[]; result: T };

/**
 * The optimistic transaction, written once: read and decide (`decide`), commit
 * with the compares that make the decision's reads still true, and on a lost
 * compare read and decide again, at most MAX_ROUNDS times. Transport errors
 * are retried by the store; `decide` should read through `store.retrying`.
 */
export async function optimistic<T>(
  store: Store,
  label: string,
  decide: () => Promise<Decision<T>>,
): Promise<T> {
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const d = await decide();
    if ('done' in d) return d.done;
    const res = await store.retrying(label, () => store.txn({ compare: d.compare, success: d.success }));
    if (res.succeeded) return d.result;
  }
  throw new UnavailableError(`${label} kept losing races`);
}
