import { skewed } from '../support/clock.js';
import { etcdRepository } from '../support/etcd.js';
import { runConformance } from './suite.js';

runConformance('etcd', () => skewed((clock) => etcdRepository({ clock })), { lacks: ['handOff'] });
