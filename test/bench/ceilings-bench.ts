/** Prints the machine and its measured ceilings as one JSON line (own process). */
import { tmpdir } from 'node:os';
import { measureCeilings } from '../../src/runtime/ceilings.js';
import { machineInfo } from './machine.js';

const threads = Number(process.argv[2] ?? '2');
const ceilings = await measureCeilings(tmpdir(), threads);
process.stdout.write(`${JSON.stringify({ machine: machineInfo(), threads, ceilings })}\n`);
