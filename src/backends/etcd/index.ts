export { DEFAULT_ETCD_NAMESPACE, EtcdRepository, type EtcdRepositoryOptions } from './repository.js';
