import { ClaimConflictError, type ClaimedNode, type Repository } from '../src/protocol/index.js';

/**
 * A minimal agent loop straight on the protocol (subscribe → claim → finish),
 * so a benchmark can measure a backend without the agent pool's overhead.
 * As the agent pool does, each finish offers to take over what it makes READY
 * (rule 21: a place per worker not already holding a handed-off node), and
 * workers run handed-off nodes before claiming announced ones, each in the
 * order it came (oldest first, as the pool's queues go: the nodes one finish
 * handed off then run side by side, and finish side by side).
 * Resolves once `expectedNodes` nodes have finished.
 */
export async function drainWithDriver(
  repository: Repository,
  options: { runtime: string; concurrency: number; expectedNodes: number },
): Promise<{ finished: number; lostClaims: number; handedOff: number }> {
  const lease = await repository.grantLease(30_000);
  // A loaded machine can make a drain outlast the lease: heartbeat as an agent would.
  const heartbeat = setInterval(() => void repository.keepAlive(lease.id).catch(() => undefined), 5_000);
  const ac = new AbortController();
  const queue: { runId: string; node: string }[] = [];
  const held: ClaimedNode[] = [];
  const sleepers: (() => void)[] = [];
  const wakeOne = () => sleepers.pop()?.();
  let finished = 0;
  let lostClaims = 0;
  let handed = 0;
  const pump = (async () => {
    for await (const ev of repository.subscribe({ runtimes: [options.runtime], signal: ac.signal })) {
      if (ev.type !== 'NODE_READY') continue;
      queue.push({ runId: ev.runId, node: ev.node });
      wakeOne();
    }
  })();
  const worker = async (i: number) => {
    while (finished < options.expectedNodes) {
      let claim = held.shift();
      if (!claim) {
        const job = queue.shift();
        if (!job) {
          await new Promise<void>((r) => {
            sleepers.push(r);
            setTimeout(r, 50);
          });
          continue;
        }
        claim = await repository.claim({
          runId: job.runId,
          node: job.node,
          leaseId: lease.id,
          agentId: `bench-${i}`,
        });
        if (!claim) {
          lostClaims++;
          continue;
        }
      }
      const places = Math.max(0, options.concurrency - held.length);
      try {
        const { handedOff } = await repository.finish({
          runId: claim.runId,
          node: claim.node.spec.name,
          claimId: claim.claimId,
          conclusion: 'SUCCESS',
          handOff:
            places > 0
              ? {
                  leaseId: lease.id,
                  agentIds: Array.from({ length: places }, () => `bench-${i}`),
                  runtimes: [options.runtime],
                }
              : undefined,
        });
        finished++;
        handed += handedOff.length;
        held.push(...handedOff);
        for (let k = 1; k < handedOff.length; k++) wakeOne();
      } catch (e) {
        if (!(e instanceof ClaimConflictError)) throw e;
      }
    }
    for (const s of sleepers.splice(0)) s();
  };
  await Promise.all(Array.from({ length: options.concurrency }, (_, i) => worker(i))).finally(() =>
    clearInterval(heartbeat),
  );
  ac.abort();
  await pump;
  await repository.revokeLease(lease.id);
  return { finished, lostClaims, handedOff: handed };
}
