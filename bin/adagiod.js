#!/usr/bin/env node
// `adagiod`: the daemon (see entry.js for which build runs).
import { loadEntry } from './entry.js';

const daemon = await loadEntry('daemon/main');
process.exit(await daemon.main(process.argv.slice(2)));
