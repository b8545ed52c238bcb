import t from 'tap';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { CLI, startReplica, type Replica } from '../helpers/replicas.js';
import { storiesModelDir, waitFor } from './server-harness.js';

const modelDir = storiesModelDir();
const skip = modelDir === null ? 'stories260K not found (set CAPSERVE_SHARED to the shared folder)' : false;

/** Runs `capserve serve` as a child process on a free port (test/helpers/replicas.ts) and waits until /health is 200. */
async function serve(t: { after: (fn: () => void) => void }, sets: string[]): Promise<Replica> {
  const served = await startReplica(modelDir as string, sets);
  t.after(() => {
    if (served.child.exitCode === null) served.child.kill('SIGKILL');
  });
  return served;
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
  const child = spawn(process.execPath, [CLI, 'serve', '--set', 'server.prot=1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => (stderr += chunk));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  assert.equal(code, 1);
  assert.match(stderr, /\$\.server\.prot: unknown key 'prot'/);
});
