import type { ApiMetrics } from '../api/metrics.js';
import type { ClaimRequest, FinishRequest, Repository } from '../protocol/repository.js';

/**
 * The repository as this process's agents see it, with claims and finishes
 * counted and timed for /metrics. Everything else passes straight through.
 */
export function instrumentRepository(repo: Repository, metrics: ApiMetrics): Repository {
  const claim = async (req: ClaimRequest) => {
    const end = metrics.claimLatency.startTimer();
    try {
      const claimed = await repo.claim(req);
      if (claimed) metrics.nodeTransitions.inc({ transition: 'claimed', conclusion: '' });
      return claimed;
    } finally {
      end();
    }
  };
  const finish = async (req: FinishRequest) => {
    const result = await repo.finish(req);
    metrics.nodeTransitions.inc({ transition: 'finished', conclusion: req.conclusion });
    if (result.handedOff.length > 0)
      metrics.nodeTransitions.inc({ transition: 'claimed', conclusion: '' }, result.handedOff.length);
    return result;
  };
  return new Proxy(repo, {
    get(target, prop, receiver) {
      if (prop === 'claim') return claim;
      if (prop === 'finish') return finish;
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}
