export { MemoryRepository, type MemoryRepositoryOptions } from './repository.js';
