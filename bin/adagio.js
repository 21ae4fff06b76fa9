#!/usr/bin/env node
// `adagio`: the command-line client (see entry.js for which build runs).
import { loadEntry } from './entry.js';

const cli = await loadEntry('cli/main');
await cli.main();
