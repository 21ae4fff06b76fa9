import { dynamoDbRepository } from '../support/dynamodb.js';
import { runConformance } from './suite.js';

runConformance('dynamodb', () => dynamoDbRepository());
