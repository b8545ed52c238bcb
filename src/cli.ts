#!/usr/bin/env node
/**
 * capserve command line: serve | generate | model (create, inspect, compile) | bench.
 */

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { errorLine } from './error-line.js';

const USAGE = `usage:
  capserve serve [--config FILE] [--model DIR] [--host H] [--port N] [--policy NAME] [--served-model-name NAME] [--set PATH=VALUE ...]
  capserve generate --model DIR --prompt TEXT [--max-tokens N] [--temperature T] [--top-p P] [--top-k K] [--seed N] [--dtype fp32|int8|int4] [--chat]
  capserve model create --arch llama|qwen2|mistral|mixtral|qwen2_moe|qwen3|qwen3_moe|smollm3|phi3|gemma2|gemma3_text --preset tiny|small|135m --seed N --out DIR
  capserve model inspect DIR
  capserve model compile DIR [--dtype fp32|int8|int4] [--block-size 16|32|64|128] [--cache-dir DIR]
  capserve bench [--quick] [--out DIR]`;

function fail(message: string): never {
  process.stderr.write(`capserve: ${message}\n${USAGE}\n`);
  process.exit(2);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve': {
      const { runServe } = await import('./server/serve-command.js');
      await runServe(rest);
      return;
    }
    case 'generate': {
      const { runGenerate } = await import('./commands/generate-command.js');
      await runGenerate(rest);
      return;
    }
    case 'model': {
      const { runModelCommand } = await import('./commands/model-command.js');
      await runModelCommand(rest);
      return;
    }
    case 'bench': {
      const script = join(dirname(fileURLToPath(import.meta.url)), '..', 'test', 'bench', 'run.js');
      const res = spawnSync(process.execPath, [script, ...rest], { stdio: 'inherit' });
      process.exit(res.status ?? 1);
      return;
    }
    case undefined:
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return;
    default:
      fail(`unknown command ${command}`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(errorLine(err));
  process.exit(1);
});
