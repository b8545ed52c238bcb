import t from 'tap';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import path from 'node:path';
import { storiesModelDir, waitFor } from './server-harness.js';

const modelDir = storiesModelDir();
const skip = modelDir === null ? 'stories260K not found (set CAPSERVE_SHARED to the shared folder)' : false;
const cli = path.resolve(process.cwd(), 'dist/src/cli.js');

interface Served {
  readonly child: ChildProcess;
  readonly port: number;
  readonly logs: () => Record<string, unknown>[];
  readonly exited: Promise<number | null>;
}

/** Runs `capserve serve` as a child process on a free port and waits until /health is 200. */
async function serve(t: { after: (fn: () => void) => void }, sets: string[]): Promise<Served> {
  const args = [
    cli,
    'serve',
    '--model',
    modelDir as string,
    '--port',
    '0',
    '--set',
    'model.chatTemplateFallback=chatml',
    '--set',
    'engine.threads=1',
    ...sets.flatMap((s) => ['--set', s]),
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CAPSERVE_LOG_LEVEL: 'info' } });
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const lines: Record<string, unknown>[] = [];
  let stderr = '';
  let buffer = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    buffer += chunk;
    const parts = buffer.split('\n');
    buffer = parts.pop() ?? '';
    for (const line of parts) if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let port = 0;
  await waitFor(
    () => {
      const listening = lines.find((l) => typeof l['msg'] === 'string' && l['msg'].startsWith('Server listening at http://127.0.0.1:'));
      if (listening) port = Number(/:(\d+)$/.exec(String(listening['msg']))?.[1]);
      if (child.exitCode !== null) throw new Error(`capserve exited early: ${stderr}`);
      return port > 0;
    },
    // Starting node and importing onnxruntime takes 10-20 s on a loaded 2-core machine at nice 19.
    30_000,
    'server listening',
  );
  const deadline = Date.now() + 20_000;
  for (;;) {
    const status = await fetch(`http://127.0.0.1:${port}/health`).then(
      (r) => r.status,
      (err: unknown) => {
        throw new Error(`GET /health failed (${String(err)}); exit code ${child.exitCode}; stderr: ${stderr}; logs: ${JSON.stringify(lines.slice(-5))}`);
      },
    );
    if (status === 200) break;
    assert.equal(status, 503, 'health is 503 while the model loads');
    if (Date.now() > deadline) throw new Error('model did not load');
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, port, logs: () => lines, exited };
}

/** Starts a long streaming completion; resolves `firstData` on the first SSE bytes and `body` at the end. */
function longStream(port: number): { firstData: Promise<void>; body: Promise<string> } {
  let markFirst: () => void = () => undefined;
  const firstData = new Promise<void>((resolve) => (markFirst = resolve));
  const body = new Promise<string>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/completions', headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        markFirst();
      });
      res.on('end', () => resolve(text));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(JSON.stringify({ prompt: 'Once upon a time', max_tokens: 500, ignore_eos: true, stream: true, stream_options: { include_usage: true } }));
  });
  return { firstData, body };
}

t.test('SIGTERM: stops accepting, lets the running stream finish, exits 0', { skip }, async (t) => {
  const served = await serve(t, ['server.shutdownGraceMs=20000']);
  const stream = longStream(served.port);
  await stream.firstData;
  served.child.kill('SIGTERM');
  await waitFor(() => served.logs().some((l) => l['msg'] === 'shutting down: no new requests, draining running ones'), 5000, 'drain log');
  const drainLog = served.logs().find((l) => l['msg'] === 'shutting down: no new requests, draining running ones');
  assert.equal(drainLog?.['inflight'], 1, 'the stream was still running when SIGTERM arrived');
  await assert.rejects(fetch(`http://127.0.0.1:${served.port}/health`), 'new connections are refused');
  const body = await stream.body;
  assert.ok(body.endsWith('data: [DONE]\n\n'));
  assert.match(body, /"finish_reason":"length"/);
  assert.match(body, /"completion_tokens":500/);
  assert.equal(await served.exited, 0);
});

t.test('SIGTERM with the grace period over: running streams end with a shutting_down error, exit 0', { skip }, async (t) => {
  const served = await serve(t, ['server.shutdownGraceMs=0']);
  const stream = longStream(served.port);
  await stream.firstData;
  served.child.kill('SIGTERM');
  const body = await stream.body;
  assert.match(
    body,
    /data: \{"error":\{"message":"The server is shutting down\.","type":"service_unavailable","param":null,"code":"shutting_down"\}\}\n\ndata: \[DONE\]\n\n$/,
  );
  assert.equal(await served.exited, 0);
});

t.test('a bad config stops `capserve serve` with exit 1 and a message naming the key', { skip }, async () => {
  const child = spawn(process.execPath, [cli, 'serve', '--set', 'server.prot=1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => (stderr += chunk));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  assert.equal(code, 1);
  assert.match(stderr, /\$\.server\.prot: unknown key 'prot'/);
});
