import type { ICompare, IRequestOp, ITxnResponse } from 'etcd3';
import { keptLosingRaces } from '../../protocol/errors.js';
import type { Store } from './store.js';

/**
 * What a round decided from its read: nothing to write (`done`), or a
 * transaction and its result once committed (`result`, or `resultOf` the
 * committed response, e.g. for its revision). `failure` ops run when the
 * compares fail; their responses come back to the next round's `decide`, so
 * a lost race can re-read in the same round trip as the commit.
 */
export type Decision<T> =
  | { done: T }
  | ({ compare: ICompare[]; success: IRequestOp[]; failure?: IRequestOp[] } & (
      | { result: T }
      | { resultOf: (committed: ITxnResponse) => T }
    ));

/**
 * The optimistic transaction, written once: read and decide (`decide`), commit
 * with the compares that make the decision's reads still true, and on a lost
 * compare read and decide again, at most `store.maxRaceRounds` times; then
 * UnavailableError (keptLosingRaces) naming `what` (the transition and the key
 * it fought over), which the caller passes on: the call may succeed later.
 * `decide` gets the previous round's failed response (undefined on the first
 * round), with its `failure` ops' responses in order. Transport errors are
 * retried by the store; `decide` should read through `store.retrying`.
 */
export async function optimistic<T>(
  store: Store,
  what: string,
  decide: (lost?: ITxnResponse) => Promise<Decision<T>>,
): Promise<T> {
  let lost: ITxnResponse | undefined;
  for (let round = 0; round < store.maxRaceRounds; round++) {
    const d = await decide(lost);
    if ('done' in d) return d.done;
    const res = await store.retrying(what, () =>
      store.txn({ compare: d.compare, success: d.success, ...(d.failure ? { failure: d.failure } : {}) }),
    );
    if (res.succeeded) return 'result' in d ? d.result : d.resultOf(res);
    lost = res;
  }
  throw keptLosingRaces(what, store.maxRaceRounds);
}
