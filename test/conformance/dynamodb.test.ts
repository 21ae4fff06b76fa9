import { skewed } from '../support/clock.js';
import { dynamoDbRepository } from '../support/dynamodb.js';
import { runConformance } from './suite.js';

runConformance('dynamodb', () => skewed((clock) => dynamoDbRepository({ clock })));
