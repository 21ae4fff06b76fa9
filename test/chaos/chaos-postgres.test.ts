import { chaosPostgres } from './backends.js';
import { shortChaos } from './short.js';

shortChaos('PostgreSQL: agents killed and paused, the server restarted', chaosPostgres, 11);
