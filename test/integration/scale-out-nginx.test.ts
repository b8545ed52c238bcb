/**
 * Scale-out on real infrastructure: three `capserve serve` processes on
 * loopback behind Debian's nginx running the shipped deploy/nginx/capserve.conf.
 * A bounded load (32 concurrent clients, streaming chat, short answers on
 * stories260K); mid-load one replica gets SIGTERM and another SIGKILL. The
 * drained replica finishes what it was running and receives nothing new; new
 * requests go to the others; clients that retry on 502/503 (and on a stream
 * the SIGKILL cut) lose nothing; each conversation sticks to one replica while
 * all are up. Figures are reported, not asserted (throughput against one
 * replica is test/bench/scale-out-bench.ts).
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { nginxBinary, runLoad, startNginx, startReplica, type Attempt, type Replica } from '../helpers/replicas.js';
import { storiesModelDir } from './server-harness.js';

const modelDir = storiesModelDir();
const nginx = nginxBinary();
const skip =
  modelDir === null
    ? 'stories260K not found (set CAPSERVE_SHARED to the shared folder)'
    : nginx === null
      ? 'nginx not found (apt-get install nginx-light, or set CAPSERVE_NGINX to its binary)'
      : false;

const BODY = { messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 24, ignore_eos: true, temperature: 0 };
const CLIENTS = 32;
const TOTAL = 160;

/** The replica that answered: the last address nginx tried. */
function answeredBy(a: Attempt): string {
  return a.upstream.split(',').at(-1)?.trim() ?? '';
}

t.test('three replicas behind nginx: SIGTERM drains, SIGKILL is retried around, affinity holds, nothing is lost', { skip, timeout: 180_000 }, async (t) => {
  const replicas: Replica[] = await Promise.all([0, 1, 2].map(() => startReplica(modelDir as string, ['server.shutdownGraceMs=30000'])));
  t.after(() => {
    for (const r of replicas) if (r.child.exitCode === null) r.child.kill('SIGKILL');
  });
  const proxy = await startNginx(
    nginx as string,
    replicas.map((r) => r.port),
  );
  t.after(() => proxy.stop());
  const [drained, killed] = replicas as [Replica, Replica, Replica];
  const addr = (r: Replica): string => `127.0.0.1:${r.port}`;

  // SIGTERM goes out once a quarter of the load is done, the moment the drained replica starts
  // answering a stream (its headers have just arrived, its tokens are still to come), so the
  // drain always has work in flight: the hash may leave that replica idle at any given instant.
  let termArmed = false;
  let termAt = Infinity;
  let killAt = Infinity;
  const { outcomes, seconds } = await runLoad(proxy.port, {
    clients: CLIENTS,
    total: TOTAL,
    body: BODY,
    onResponse: (upstream, status) => {
      const answeredByDrained = upstream.split(',').at(-1)?.trim() === addr(drained);
      if (termArmed && termAt === Infinity && status === 200 && answeredByDrained) {
        termAt = performance.now();
        drained.child.kill('SIGTERM');
      }
    },
    onProgress: (finished) => {
      if (finished === TOTAL / 4) termArmed = true;
      if (finished === TOTAL / 2) {
        killAt = performance.now();
        killed.child.kill('SIGKILL');
      }
    },
  });
  assert.ok(termAt < Infinity, 'the drained replica answered a stream after a quarter of the load, and got SIGTERM then');
  assert.equal(await drained.exited, 0, 'the drained replica exits 0');

  const attempts = outcomes.flatMap((o) => o.attempts);
  const failed = attempts.filter((a) => !a.complete);
  const byKind = { status502: 0, status503: 0, cut: 0, other: 0 };
  for (const a of failed) {
    if (a.status === 502) byKind.status502++;
    else if (a.status === 503) byKind.status503++;
    else if (a.status === 200) byKind.cut++;
    else byKind.other++;
  }
  const lost = outcomes.filter((o) => !o.ok);
  const tokens = outcomes.reduce((n, o) => n + (o.attempts.at(-1)?.completionTokens ?? 0), 0);
  const served = new Map<string, number>();
  for (const a of attempts) if (a.complete) served.set(answeredBy(a), (served.get(answeredBy(a)) ?? 0) + 1);
  const drainLog = drained.logs().find((l) => l['msg'] === 'shutting down: no new requests, draining running ones');
  t.comment(
    `${TOTAL} requests, ${CLIENTS} clients, ${seconds.toFixed(1)} s, ${(tokens / seconds).toFixed(0)} tokens/s through nginx; ` +
      `attempts ${attempts.length}, failed attempts ${failed.length} (502: ${byKind.status502}, 503: ${byKind.status503}, cut by SIGKILL: ${byKind.cut}, other: ${byKind.other}); ` +
      `lost ${lost.length}; in flight on the drained replica at SIGTERM: ${String(drainLog?.['inflight'])}; ` +
      `served by ${[...served].map(([k, v]) => `${k === addr(drained) ? 'drained' : k === addr(killed) ? 'killed' : 'survivor'}=${v}`).join(', ')}`,
  );

  assert.deepEqual(
    lost.map((o) => o.attempts.map((a) => a.error)),
    [],
    'every request completed (with retries on 502/503 and on cut streams)',
  );
  assert.equal(byKind.other, 0, `no failure other than 502, 503 or a cut stream: ${failed.map((a) => a.error).join(' | ')}`);

  // The drained replica: it had work in flight, finished it, and was sent nothing new.
  assert.ok(typeof drainLog?.['inflight'] === 'number' && drainLog['inflight'] >= 1, 'SIGTERM arrived while the replica was serving');
  assert.ok(!drained.logs().some((l) => l['msg'] === 'grace period over: aborting running requests'), 'nothing was aborted');
  // A connection accepted just before the listener closed is answered 503 shutting_down, which nginx retries elsewhere.
  const afterDrain = drained.logs().slice(drained.logs().indexOf(drainLog as Record<string, unknown>));
  const lateIds = new Set(afterDrain.filter((l) => l['msg'] === 'incoming request').map((l) => l['reqId']));
  const lateStatuses = afterDrain
    .filter((l) => l['msg'] === 'request completed' && lateIds.has(l['reqId']))
    .map((l) => (l['res'] as { statusCode?: number } | undefined)?.statusCode);
  t.comment(`arrived at the drained replica after SIGTERM and refused with 503 (nginx retried them elsewhere): ${lateIds.size}`);
  assert.deepEqual(
    lateStatuses,
    [...lateIds].map(() => 503),
    'the drained replica served nothing new after SIGTERM (late arrivals got 503)',
  );
  const onDrained = attempts.filter((a) => answeredBy(a) === addr(drained));
  assert.ok(onDrained.length > 0);
  assert.deepEqual(
    onDrained.filter((a) => !a.complete).map((a) => a.error),
    [],
    'every stream the drained replica answered is complete',
  );
  // Signal delivery and the drain's first line take a moment; anything started 0.5 s after SIGTERM went elsewhere.
  assert.equal(attempts.filter((a) => a.startedAt > termAt + 500 && answeredBy(a) === addr(drained)).length, 0, 'new requests go to the others');

  // Only the SIGKILLed replica cut streams, and only those running when it died.
  for (const a of failed.filter((x) => x.status === 200)) {
    assert.equal(answeredBy(a), addr(killed), `a cut stream came from the killed replica: ${a.upstream}`);
    assert.ok(a.startedAt < killAt && a.endedAt >= killAt, 'a cut stream was running at the SIGKILL');
  }
  assert.equal(attempts.filter((a) => a.startedAt > killAt + 500 && answeredBy(a) === addr(killed)).length, 0, 'nothing is answered by the dead replica');

  // Affinity: while all three were up, each conversation was answered by one replica; the load was spread.
  const before = new Map<string, Set<string>>();
  for (const o of outcomes) {
    for (const a of o.attempts) if (a.complete && a.endedAt < termAt) before.set(o.conversation, (before.get(o.conversation) ?? new Set()).add(answeredBy(a)));
  }
  const split = [...before].filter(([, set]) => set.size > 1).map(([c, set]) => `${c}: ${[...set].join(' ')}`);
  assert.deepEqual(split, [], 'each conversation stays on its replica');
  assert.ok(new Set([...before.values()].flatMap((s) => [...s])).size >= 2, 'conversations are spread over the replicas');
});
