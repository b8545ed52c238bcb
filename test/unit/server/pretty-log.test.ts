import t from 'tap';
import assert from 'node:assert/strict';
import { formatLogLine, prettyLogStream } from '../../../src/server/pretty-log.js';

t.test('pretty logs: time, level, message, then the other fields; non-JSON passes through', async () => {
  const time = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
  const line = JSON.stringify({
    level: 30,
    time,
    pid: 1,
    hostname: 'h',
    msg: 'request completed',
    reqId: 'req-1',
    res: { statusCode: 200 },
    note: 'two words',
  });
  assert.equal(formatLogLine(line), '03:04:05.678 INFO  request completed reqId=req-1 res={"statusCode":200} note="two words"\n');
  assert.equal(formatLogLine('not json'), 'not json');
  const written: string[] = [];
  prettyLogStream({ write: (t: string) => written.push(t) }).write(`${JSON.stringify({ level: 40, time, msg: 'careful' })}\n`);
  assert.deepEqual(written, ['03:04:05.678 WARN  careful\n']);
});
