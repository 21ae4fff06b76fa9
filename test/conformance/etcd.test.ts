import { SkewClock } from '../support/clock.js';
import { etcdRepository } from '../support/etcd.js';
import { runConformance } from './suite.js';

runConformance('etcd', async () => {
  const clock = new SkewClock();
  const { repository, teardown } = await etcdRepository({ clock });
  return {
    repository,
    teardown,
    advance: async (ms) => {
      clock.advance(ms);
      await repository.sweepTimers();
    },
  };
});
