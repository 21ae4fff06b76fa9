export { MIGRATIONS } from './migrations.js';
export { PostgresRepository, type PostgresRepositoryOptions } from './repository.js';
