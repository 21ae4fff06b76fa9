import type { Repository } from '../../src/protocol/repository.js';

/**
 * A real repository whose subscriptions count the events their consumer has
 * taken: what a subscriber holding back (a full agent pool, a claim-next
 * feed) leaves in the store. Nothing else is changed.
 */
export function countingSubscriptions<R extends Repository>(repo: R): { repo: R; delivered: () => number } {
  let delivered = 0;
  const counted = new Proxy(repo, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (prop !== 'subscribe') return typeof value === 'function' ? value.bind(target) : value;
      return (...args: Parameters<Repository['subscribe']>) => {
        const events = target.subscribe(...args);
        return {
          async *[Symbol.asyncIterator]() {
            for await (const e of events) {
              delivered++;
              yield e;
            }
          },
        };
      };
    },
  });
  return { repo: counted, delivered: () => delivered };
}
