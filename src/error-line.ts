/**
 * The one line a capserve command prints on stderr when it stops on an error:
 * `capserve: <problem>`, where the problem names its file first when it has one
 * (`capserve: <file>: <problem>`). Main-thread errors and errors raised while
 * the inference worker loads the model read alike; no stack (set
 * CAPSERVE_LOG_LEVEL=debug on `serve` to log the worker's).
 */
export function errorLine(err: unknown): string {
  return `capserve: ${err instanceof Error ? err.message : String(err)}\n`;
}
