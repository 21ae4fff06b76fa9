import { SkewClock } from '../support/clock.js';
import { movePostgresClock, postgresRepository } from '../support/postgres.js';
import { runConformance } from './suite.js';

runConformance(
  'postgres',
  async () => {
    const clock = new SkewClock();
    const { repository, schema, teardown } = await postgresRepository({ clock });
    return {
      repository,
      teardown,
      advance: async (ms) => {
        clock.advance(ms);
        await movePostgresClock(repository, schema, clock.offsetMs);
        await repository.sweepTimers();
      },
    };
  },
  { lacks: ['handOff'] },
);
