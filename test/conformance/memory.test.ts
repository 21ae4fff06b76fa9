import { MemoryRepository } from '../../src/backends/memory/index.js';
import { runConformance } from './suite.js';

runConformance('memory', async () => {
  const repository = new MemoryRepository();
  return { repository, teardown: () => repository.close() };
});
