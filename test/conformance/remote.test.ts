/**
 * The conformance suite through RemoteRepository: each test gets a fresh
 * memory backend behind an API server (what `adagiod api` runs) and talks to
 * it only over the wire, through the remote backend agents use
 * (`-backend-type remote`). What a remote client cannot do is the `lacks`
 * list below (capabilities are documented in harness.ts); each such test is
 * replaced by a check that the client refuses it clearly.
 */
import { ApiServer } from '../../src/api/server.js';
import { MemoryRepository } from '../../src/backends/memory/index.js';
import { RemoteRepository } from '../../src/backends/remote/index.js';
import { SkewClock } from '../support/clock.js';
import { runConformance } from './suite.js';

runConformance(
  'remote (API server over memory)',
  async () => {
    const clock = new SkewClock();
    const store = new MemoryRepository({ clock });
    const server = new ApiServer({ repository: store, ui: false });
    const address = await server.listen('127.0.0.1', 0);
    // Client and server share this process: 1,000 concurrent claims (the claims topic) took over the
    // default 30 s call timeout on a machine at load 12. The bound here is a hang bound, not a target.
    const repository = new RemoteRepository({ address, timeoutMs: 120_000 });
    return {
      repository,
      teardown: async () => {
        await repository.close();
        await server.close(500);
        await store.close();
      },
      // The store behind the API judges the time rules; the client only sees their effects.
      advance: async (ms) => {
        clock.advance(ms);
        store.sweepTimers();
      },
    };
  },
  { lacks: ['retention', 'scheduler', 'handOff'] },
);
