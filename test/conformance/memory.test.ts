import { MemoryRepository } from '../../src/backends/memory/index.js';
import { SkewClock } from '../support/clock.js';
import { runConformance } from './suite.js';

runConformance('memory', async () => {
  const clock = new SkewClock();
  const repository = new MemoryRepository({ clock });
  return {
    repository,
    teardown: () => repository.close(),
    advance: async (ms) => {
      clock.advance(ms);
      repository.sweepTimers();
    },
  };
});
