/**
 * The etcd client repeats a call on its own when a member fails mid-call
 * (etcd3's global retry policy). For a transaction that had in fact committed,
 * the repeat's compares fail and the caller sees "not succeeded": start,
 * claim and finish must still recognise their own committed write instead of
 * reporting a collision, losing the claim (the node would stay RUNNING under
 * a live lease with nobody running it) or refusing the result. Here the
 * repeat is made deterministic: the store sends chosen transactions twice
 * to a real etcd and answers with the second reply.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import type { EtcdRepository } from '../../src/backends/etcd/index.js';
import { Store } from '../../src/backends/etcd/store.js';
import { etcdRepository } from '../support/etcd.js';

const spec = {
  nodes: [
    { name: 'a', runtime: 'work', metadata: {}, retry: {} },
    { name: 'b', runtime: 'work', metadata: {}, retry: {} },
  ],
  edges: [{ source: 'a', destination: 'b' }],
};

const original = Store.prototype.txn;
/** Which writing transactions to send twice: by a predicate on their ops. */
function repeatWrites(
  which: (ops: string[]) => boolean,
  /** Runs between the two sends, with the store unpatched (as another process would act meanwhile). */
  between?: (keys: string[]) => Promise<void>,
): { repeated: () => number } {
  let count = 0;
  Store.prototype.txn = async function patched(this: Store, req) {
    const keys = (req.success ?? []).flatMap((op) =>
      op.request_put ? [`put ${op.request_put.key?.toString()}`] : [],
    );
    if (keys.length === 0 || !which(keys)) return original.call(this, req);
    count++;
    await original.call(this, req);
    if (between) {
      Store.prototype.txn = original;
      await between(keys);
      Store.prototype.txn = patched;
    }
    return original.call(this, req);
  };
  return { repeated: () => count };
}

describe('etcd: a committed transaction repeated by the client', { timeout: 60_000 }, () => {
  let repo: EtcdRepository;
  let teardown: () => Promise<void>;
  before(async () => {
    ({ repository: repo, teardown } = await etcdRepository());
  });
  afterEach(() => {
    Store.prototype.txn = original;
  });
  after(async () => teardown());

  it('start returns the run it stored, not a collision', async () => {
    const r = repeatWrites((ops) => ops.some((k) => /r\/[0-9A-Z]{26}$/.test(k)));
    const run = await repo.start(spec);
    Store.prototype.txn = original;
    assert.ok(r.repeated() >= 1, 'the start transaction was repeated');
    const stored = await repo.inspect(run.id);
    assert.deepEqual(
      stored.nodes.map((n) => [n.spec.name, n.status]),
      [
        ['a', 'READY'],
        ['b', 'WAITING'],
      ],
    );
  });

  it('start returns its run even when it was cancelled before the repeat', async () => {
    let cancelled = '';
    repeatWrites(
      (ops) => ops.some((k) => /r\/[0-9A-Z]{26}$/.test(k)),
      async (keys) => {
        cancelled = /r\/([0-9A-Z]{26})$/.exec(keys.find((k) => /r\/[0-9A-Z]{26}$/.test(k))!)![1]!;
        await repo.cancel(cancelled);
      },
    );
    const run = await repo.start(spec);
    Store.prototype.txn = original;
    assert.equal(
      run.id,
      cancelled,
      'the run start wrote, and another process cancelled, is the one returned',
    );
    assert.equal((await repo.inspect(run.id)).conclusion, 'CANCELLED');
  });

  it('claim returns its own committed claim; finish accepts its own committed result', async () => {
    const run = await repo.start(spec);
    const lease = await repo.grantLease(30_000);
    const claims = repeatWrites((ops) => ops.some((k) => k.includes(`t/work/c/${run.id}/a`)));
    const claimed = await repo.claim({ runId: run.id, node: 'a', leaseId: lease.id, agentId: 'agent' });
    Store.prototype.txn = original;
    assert.ok(claims.repeated() >= 1, 'the claim transaction was repeated');
    assert.ok(claimed, 'the claim is returned to its claimer, not lost');
    assert.equal((await repo.inspect(run.id)).nodes[0]!.claim?.id, claimed.claimId);

    const finishes = repeatWrites((ops) => ops.some((k) => k.endsWith(`a/${run.id}/a/000001`)));
    await repo.finish({ runId: run.id, node: 'a', claimId: claimed.claimId, conclusion: 'SUCCESS' });
    Store.prototype.txn = original;
    assert.ok(finishes.repeated() >= 1, 'the finish transaction was repeated');
    const after = await repo.inspect(run.id);
    assert.deepEqual(
      after.nodes.map((n) => [n.spec.name, n.status, n.attempts.map((a) => a.conclusion)]),
      [
        ['a', 'COMPLETED', ['SUCCESS']],
        ['b', 'READY', []],
      ],
    );
    await repo.revokeLease(lease.id);
  });
});
