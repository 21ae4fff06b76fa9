/**
 * Fault injection around a real repository: the named methods fail with
 * UnavailableError a given number of times before reaching the store, as a
 * flaky network would. The store itself is never replaced.
 */
import { UnavailableError } from '../../src/protocol/errors.js';
import type { Repository } from '../../src/protocol/repository.js';

export type Faults = Partial<Record<keyof Repository, number>>;

export function withFaults(repo: Repository, faults: Faults): { repository: Repository; injected: Faults } {
  const remaining: Faults = { ...faults };
  const injected: Faults = {};
  const repository = new Proxy(repo, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      const name = prop as keyof Repository;
      return (...args: unknown[]) => {
        const left = remaining[name] ?? 0;
        if (left > 0) {
          remaining[name] = left - 1;
          injected[name] = (injected[name] ?? 0) + 1;
          const error = new UnavailableError(`injected fault in ${String(name)}`);
          if (name === 'subscribe' || name === 'watch') throw error;
          return Promise.reject(error);
        }
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { repository, injected };
}
