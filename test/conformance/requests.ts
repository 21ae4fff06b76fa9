/**
 * Requests checked once at the protocol boundary (src/model/requests.ts):
 * every backend refuses the same bad input with the same error and the same
 * words, before it writes anything.
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { MAX_LIST_LIMIT } from '../../src/model/index.js';
import {
  ClaimConflictError,
  InvalidArgumentError,
  InvalidGraphError,
  NotFoundError,
} from '../../src/protocol/errors.js';
import type { FinishConclusion } from '../../src/protocol/repository.js';
import { graph, node } from './fixtures.js';
import type { ConformanceTest } from './harness.js';

/** Asserts `call` rejects with `type` and exactly `message`. */
async function refuses(call: Promise<unknown>, type: new (...a: never[]) => Error, message: string) {
  await assert.rejects(call, (e: Error) => {
    assert.ok(e instanceof type, `${e.name}: ${e.message}`);
    assert.equal(e.message, message);
    return true;
  });
}

export function requestsSpec(test: ConformanceTest): void {
  describe('requests refused at the boundary, in the same words', () => {
    test('list limits', async (h) => {
      const words = `limit must be a whole number from 1 to ${MAX_LIST_LIMIT}`;
      for (const limit of [0, -1, 1.5, MAX_LIST_LIMIT + 1, Number.NaN])
        await refuses(h.repo.listRuns({ limit }), InvalidArgumentError, words);
      assert.deepEqual((await h.repo.listRuns({ limit: MAX_LIST_LIMIT })).runs, []);
    });

    test('lease TTLs', async (h) => {
      for (const ttl of [0, -5, Number.NaN, Number.POSITIVE_INFINITY])
        await refuses(h.repo.grantLease(ttl), InvalidArgumentError, 'lease TTL must be positive');
    });

    test('graphs, with every problem named and nothing stored', async (h) => {
      await refuses(
        h.repo.start(graph(['a', 'a'], [['a', 'b']])),
        InvalidGraphError,
        'invalid graph: duplicate node name "a"; edge a -> b: unknown destination node "b"',
      );
      assert.equal((await h.repo.stats()).runCount, 0);
    });

    test('metadata and conclusions of claims and finishes', async (h) => {
      const run = await h.start(graph([node('a')]));
      const agent = await h.agent('checker');
      await refuses(
        h.repo.claim({
          runId: run.id,
          node: 'a',
          agentId: 'checker',
          leaseId: agent.lease.id,
          metadata: { k: ['bad\u0000value'] },
        }),
        InvalidArgumentError,
        'metadata "k" contains a NUL character (U+0000)',
      );
      const claimed = await agent.mustClaim(run.id, 'a');
      const finish = { runId: run.id, node: 'a', claimId: claimed.claimId };
      await refuses(
        h.repo.finish({ ...finish, conclusion: 'CANCELLED' as FinishConclusion }),
        InvalidArgumentError,
        'conclusion must be SUCCESS, FAIL or ERROR, got "CANCELLED"',
      );
      await refuses(
        h.repo.finish({ ...finish, conclusion: 'SUCCESS', metadata: { 'k\u0000': [] } }),
        InvalidArgumentError,
        'metadata key "k\\u0000" contains a NUL character (U+0000)',
      );
      assert.equal((await h.node(run.id, 'a')).status, 'RUNNING', 'a refused finish changes nothing');
    });

    test('unknown nodes and a spent claim', async (h) => {
      const run = await h.start(graph([node('a')]));
      const agent = await h.agent('checker');
      const claimed = await agent.mustClaim(run.id, 'a');
      await refuses(
        h.repo.finish({ runId: run.id, node: 'zz', claimId: claimed.claimId, conclusion: 'SUCCESS' }),
        NotFoundError,
        `node "${run.id}/zz" not found`,
      );
      await h.repo.finish({ runId: run.id, node: 'a', claimId: claimed.claimId, conclusion: 'SUCCESS' });
      await refuses(
        h.repo.finish({ runId: run.id, node: 'a', claimId: claimed.claimId, conclusion: 'FAIL' }),
        ClaimConflictError,
        `claim ${claimed.claimId} on ${run.id}/a is not the node's live claim (node COMPLETED)`,
      );
    });
  });
}
