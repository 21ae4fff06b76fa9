import { chaosEtcd } from './backends.js';
import { shortChaos } from './short.js';

shortChaos('etcd (3 members): agents killed and paused, a member killed', chaosEtcd, 12);
