import { ConfigError, parseOverride, type ConfigOverride } from '../config/load-config.js';

export interface ServeArgs {
  readonly configFile: string | undefined;
  /** Named flags first, then --set, in command-line order: later wins. */
  readonly overrides: readonly ConfigOverride[];
}

/** Flags that set one config path; their values are taken as strings or integers, never YAML. */
const FLAG_PATHS: Readonly<Record<string, { path: readonly string[]; kind: 'string' | 'port' }>> = {
  '--model': { path: ['model', 'dir'], kind: 'string' },
  '--host': { path: ['server', 'host'], kind: 'string' },
  '--port': { path: ['server', 'port'], kind: 'port' },
  '--policy': { path: ['routing', 'defaultPolicy'], kind: 'string' },
  '--served-model-name': { path: ['model', 'servedModelName'], kind: 'string' },
};

export const SERVE_USAGE =
  'capserve serve [--config FILE] [--model DIR] [--host H] [--port N] [--policy NAME] [--served-model-name NAME] [--set PATH=VALUE ...]';

/** Parses `serve`'s arguments (without the `serve` word); `--flag=value` and `--flag value` both work. */
export function parseServeArgs(argv: readonly string[]): ServeArgs {
  let configFile: string | undefined;
  const named: ConfigOverride[] = [];
  const sets: ConfigOverride[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const inline = eq > 0 ? arg.slice(eq + 1) : undefined;
    const value = (): string => {
      if (inline !== undefined) return inline;
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new ConfigError(`${flag} needs a value\nusage: ${SERVE_USAGE}`);
      i++;
      return next;
    };
    if (flag === '--config') {
      configFile = value();
    } else if (flag === '--set') {
      sets.push(parseOverride(value()));
    } else if (FLAG_PATHS[flag] !== undefined) {
      const { path, kind } = FLAG_PATHS[flag];
      const raw = value();
      if (kind === 'port') {
        if (!/^\d+$/.test(raw)) throw new ConfigError(`--port expects an integer, got '${raw}'`);
        named.push({ path, value: Number(raw) });
      } else {
        named.push({ path, value: raw });
      }
    } else {
      throw new ConfigError(`unknown argument '${arg}'\nusage: ${SERVE_USAGE}`);
    }
  }
  return { configFile, overrides: [...named, ...sets] };
}
