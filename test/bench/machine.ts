/** What machine a benchmark ran on, printed beside every result. */
import { cpus, totalmem, availableParallelism } from 'node:os';
import { runtimeVersion } from '../../src/runtime/decoder-session.js';

export interface MachineInfo {
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly node: string;
  readonly onnxruntime: string;
}

export function machineInfo(): MachineInfo {
  return {
    cpuModel: cpus()[0]?.model ?? 'unknown',
    cores: availableParallelism(),
    memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    node: process.version,
    onnxruntime: runtimeVersion(),
  };
}
