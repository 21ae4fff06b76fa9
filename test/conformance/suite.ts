/**
 * The Repository conformance suite: the protocol of docs/design.md §3 (rules 1–9)
 * and src/protocol/repository.ts, written as tests. A backend is correct when
 * it passes this suite; every backend runs the same tests.
 *
 * Plugging a backend in is one file, `test/conformance/<backend>.test.ts`:
 *
 *   import { runConformance } from './suite.js';
 *   runConformance('memory', async () => {
 *     const repository = new MemoryRepository();
 *     return { repository, teardown: () => repository.close() };
 *   });
 *
 * The factory is called once per test and must return an empty repository
 * (a fresh etcd key prefix, a fresh PostgreSQL schema, …); `teardown` runs
 * after the test whatever its outcome and should drop what it made.
 *
 * What the suite assumes of a backend, beyond the interface:
 * - it shares the test process's clock to within a few milliseconds (list
 *   windows and cleanup cutoffs are computed from returned `createdAt`s);
 * - a lease of 1 s may be rounded up, never down, and the granted TTL is the
 *   one `grantLease` returns: lapse waits use it (plus EVENT_TIMEOUT_MS);
 * - events may repeat (delivery is at least once), so tests check the set of
 *   nodes seen, never the count of events.
 *
 * Topics, one module each: start (rule 1), walk (2, 5, 7 on the example DAG),
 * retry (5), claim-ahead (20: release, the reported start), hand-off (21: a finish claims its dependents for its caller), timing (5's delays, 11 timeouts, 13 deadlines, on the injectable clock), triggers (14), resume (15), claims (2, 4), leases (3), cancel (6), listing (lists, stats,
 * cleanup), streams (8, and watch), output (live output), requests (bad input
 * refused alike), workflows (16, 17: definitions, params, run identity, filters, idempotent start), schedules (18: definitions, slots once under racing schedulers, catch-up, backfill, overlap), size (the same rules at a thousand runs and thousands of
 * nodes). Rule 9 (cost per transition) is measured
 * by the benchmarks, not asserted here.
 */
import { describe } from 'node:test';
import { cancelSpec } from './cancel.js';
import { claimAheadSpec } from './claim-ahead.js';
import { claimsSpec } from './claims.js';
import { handOffSpec } from './hand-off.js';
import { type BackendFactory, type Capability, conformanceTest } from './harness.js';
import { leasesSpec } from './leases.js';
import { listingSpec } from './listing.js';
import { malformedSpec } from './malformed.js';
import { outputSpec } from './output.js';
import { requestsSpec } from './requests.js';
import { resumeSpec } from './resume.js';
import { retrySpec } from './retry.js';
import { schedulesSpec } from './schedules.js';
import { sizeSpec } from './size.js';
import { startSpec } from './start.js';
import { streamsSpec } from './streams.js';
import { timingSpec } from './timing.js';
import { triggersSpec } from './triggers.js';
import { walkSpec } from './walk.js';
import { workflowsSpec } from './workflows.js';

export type { BackendFactory, BackendUnderTest, Capability } from './harness.js';

/** `lacks`: the capabilities (harness.ts) this backend does not offer; their tests check it refuses them. */
export function runConformance(
  backend: string,
  factory: BackendFactory,
  options: { lacks?: Capability[] } = {},
): void {
  describe(`Repository conformance: ${backend}`, () => {
    const test = conformanceTest(factory, options.lacks);
    startSpec(test);
    walkSpec(test);
    retrySpec(test);
    timingSpec(test);
    triggersSpec(test);
    resumeSpec(test);
    claimsSpec(test);
    claimAheadSpec(test);
    handOffSpec(test);
    leasesSpec(test);
    cancelSpec(test);
    listingSpec(test);
    streamsSpec(test);
    sizeSpec(test);
    outputSpec(test);
    requestsSpec(test);
    malformedSpec(test);
    workflowsSpec(test);
    schedulesSpec(test);
  });
}
