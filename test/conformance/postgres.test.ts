import { postgresRepository } from '../support/postgres.js';
import { runConformance } from './suite.js';

runConformance('postgres', () => postgresRepository());
