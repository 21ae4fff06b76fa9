import { etcdRepository } from '../support/etcd.js';
import { runConformance } from './suite.js';

runConformance('etcd', () => etcdRepository());
