import { chaosDynamoDb } from './backends.js';
import { shortChaos } from './short.js';

shortChaos(
  'DynamoDB Local: agents killed and paused, DynamoDB Local restarted on its data',
  chaosDynamoDb,
  13,
);
