/**
 * Human-readable logs for a terminal: pino's JSON lines reformatted as
 * `HH:MM:SS.mmm LEVEL message key=value ...`. `capserve serve` uses it only
 * when stdout is a TTY; piped or collected output stays one JSON object per
 * line. Never sees prompts or completions (the serializers drop them first).
 */
const LEVELS: Readonly<Record<number, string>> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const OMIT = new Set(['level', 'time', 'msg', 'pid', 'hostname']);

function field(value: unknown): string {
  return typeof value === 'string' ? (/\s/.test(value) ? JSON.stringify(value) : value) : JSON.stringify(value);
}

/** One pino JSON line as text; a line that is not JSON passes through unchanged. */
export function formatLogLine(line: string): string {
  let record: unknown;
  try {
    record = JSON.parse(line);
  } catch {
    return line;
  }
  if (record === null || typeof record !== 'object' || Array.isArray(record)) return line;
  const r = record as Record<string, unknown>;
  const time = typeof r['time'] === 'number' ? new Date(r['time']).toISOString().slice(11, 23) : '';
  const level = typeof r['level'] === 'number' ? (LEVELS[r['level']] ?? String(r['level'])) : '';
  const rest = Object.entries(r)
    .filter(([k]) => !OMIT.has(k))
    .map(([k, v]) => `${k}=${field(v)}`);
  return [time, level.padEnd(5), typeof r['msg'] === 'string' ? r['msg'] : '', ...rest].filter((s) => s !== '').join(' ') + '\n';
}

/** A pino destination writing formatted lines to `out`. */
export function prettyLogStream(out: { write(text: string): unknown }): { write(line: string): void } {
  return {
    write(chunk: string): void {
      for (const line of chunk.split('\n')) if (line.trim() !== '') out.write(formatLogLine(line));
    },
  };
}
