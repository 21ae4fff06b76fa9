export { NotSupportedError, RemoteApiError } from './errors.js';
export { RemoteRepository, type RemoteRepositoryOptions } from './repository.js';
