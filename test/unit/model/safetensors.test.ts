import t from 'tap';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { f32ToBf16, f32ToF16 } from '../../../src/model/dtype.js';
import { CheckpointError, type CheckpointErrorCode } from '../../../src/model/errors.js';
import { SafetensorsFile, openWeights, writeSafetensors } from '../../../src/model/safetensors.js';
import { tempDir } from './fixtures.js';

function sample(): Map<string, { shape: number[]; data: Float32Array }> {
  const values = [0, -0, 1, -2.5, 0.1, 1 / 3, 65504, 1e-7, -3.14159, 123.456, 6e-5, 1000.5];
  return new Map([
    ['b.vector', { shape: [12], data: Float32Array.from(values) }],
    ['a.matrix', { shape: [3, 4], data: Float32Array.from(values, (v, i) => v * (i % 2 === 0 ? 1 : -0.5)) }],
    ['c.scalar', { shape: [], data: Float32Array.of(42) }],
  ]);
}

function isCode(code: CheckpointErrorCode, ...mustMention: string[]) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof CheckpointError, `expected CheckpointError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    for (const m of mustMention) assert.ok(e.message.includes(m), `message ${JSON.stringify(e.message)} should mention ${m}`);
    return true;
  };
}

/** Writes a file with a hand-made header, to test what our writer would never produce. */
function rawSafetensors(file: string, header: Record<string, unknown>, dataBytes: number): void {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, json, Buffer.alloc(dataBytes)]));
}

t.test('F32 round trip is exact, with metadata, sorted 8-byte-aligned layout', async () => {
  const file = path.join(tempDir('st'), 'f32.safetensors');
  const tensors = sample();
  writeSafetensors(file, tensors, 'F32', { format: 'pt' });
  const st = SafetensorsFile.open(file);
  assert.deepEqual(st.metadata, { format: 'pt' });
  assert.deepEqual([...st.names()].sort(), ['a.matrix', 'b.vector', 'c.scalar']);
  for (const [name, t] of tensors) {
    const got = st.get(name);
    assert.deepEqual(got.shape, t.shape);
    assert.deepEqual(got.data, t.data);
  }
  const headerLen = Number(fs.readFileSync(file).readBigUInt64LE(0));
  assert.equal(headerLen % 8, 0);
  assert.equal(st.info('a.matrix').offset, 8 + headerLen, 'tensors are laid out by name');
});

t.test('F16 and BF16 round trip within their precision; encoders round to nearest even', async () => {
  const dir = tempDir('st16');
  const tensors = sample();
  for (const [dtype, relTol] of [
    ['F16', 2 ** -11],
    ['BF16', 2 ** -8],
  ] as const) {
    const file = path.join(dir, `${dtype}.safetensors`);
    writeSafetensors(file, tensors, dtype);
    const st = SafetensorsFile.open(file);
    assert.equal(st.info('b.vector').dtype, dtype);
    assert.equal(st.info('b.vector').byteLength, 24);
    for (const [name, t] of tensors) {
      const got = st.get(name).data;
      for (let i = 0; i < t.data.length; i++) {
        const want = t.data[i]!;
        // F16's smallest normal is 6.1e-5; below it absolute error is what matters.
        const tol = Math.max(Math.abs(want) * relTol, dtype === 'F16' ? 2 ** -25 : 0);
        assert.ok(Math.abs(got[i]! - want) <= tol, `${dtype} ${name}[${i}]: ${got[i]} vs ${want}`);
      }
    }
  }
  assert.equal(f32ToF16(1), 0x3c00);
  assert.equal(f32ToF16(-2), 0xc000);
  assert.equal(f32ToF16(65504), 0x7bff);
  assert.equal(f32ToF16(65520), 0x7c00, 'halfway above max rounds to inf');
  assert.equal(f32ToF16(2 ** -24), 0x0001, 'smallest subnormal');
  assert.equal(f32ToF16(2 ** -25), 0x0000, 'tie rounds to even (zero)');
  assert.equal(f32ToF16(3 * 2 ** -25), 0x0002, 'tie rounds to even (two)');
  assert.equal(f32ToF16(1 / 3), 0x3555);
  assert.equal(f32ToF16(1 + 2 ** -11), 0x3c00, 'tie at 1 + half ulp rounds to even');
  assert.equal(f32ToF16(1 + 3 * 2 ** -11), 0x3c02);
  assert.ok((f32ToF16(NaN) & 0x7c00) === 0x7c00 && (f32ToF16(NaN) & 0x3ff) !== 0);
  assert.equal(f32ToBf16(1), 0x3f80);
  assert.equal(f32ToBf16(1 / 3), 0x3eab);
  assert.equal(f32ToBf16(-Infinity), 0xff80);
  assert.ok((f32ToBf16(NaN) & 0x7f) !== 0);
});

t.test('sharded checkpoint through model.safetensors.index.json', async () => {
  const dir = tempDir('shard');
  const tensors = sample();
  const [first, ...rest] = [...tensors.entries()];
  writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), new Map([first!]), 'F32');
  writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), new Map(rest), 'BF16');
  const weightMap: Record<string, string> = { [first![0]]: 'model-00001-of-00002.safetensors' };
  for (const [name] of rest) weightMap[name] = 'model-00002-of-00002.safetensors';
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  const w = openWeights(dir);
  assert.deepEqual([...w.names()].sort(), [...tensors.keys()].sort());
  assert.deepEqual(w.get('b.vector').data, tensors.get('b.vector')!.data);
  assert.equal(w.get('c.scalar').data[0], 42);
  assert.equal(w.info('a.matrix').file, path.join(dir, 'model-00002-of-00002.safetensors'));
  assert.equal(w.files.length, 2);
  assert.throws(() => w.get('nope'), isCode('missing_tensor', 'nope'));

  weightMap['d.ghost'] = 'model-00001-of-00002.safetensors';
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }));
  assert.throws(() => openWeights(dir), isCode('missing_tensor', 'd.ghost', 'model-00001-of-00002.safetensors'));
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { x: 'model-00009-of-00009.safetensors' } }));
  assert.throws(() => openWeights(dir), isCode('missing_file', 'model-00009-of-00009.safetensors'));
});

t.test('a truncated file is reported at open, naming file and tensor', async () => {
  const file = path.join(tempDir('trunc'), 'model.safetensors');
  writeSafetensors(file, sample(), 'F32');
  const size = fs.statSync(file).size;
  fs.truncateSync(file, size - 2);
  // c.scalar is last in name order, so it is the one cut off.
  assert.throws(() => SafetensorsFile.open(file), isCode('truncated', file, 'c.scalar'));
  fs.truncateSync(file, 5);
  assert.throws(() => SafetensorsFile.open(file), isCode('truncated', file));
  fs.truncateSync(file, 20);
  assert.throws(() => SafetensorsFile.open(file), isCode('truncated', file, 'header length'));
});

t.test('unknown dtypes are refused on read, naming tensor and supported dtypes', async () => {
  const file = path.join(tempDir('dtype'), 'model.safetensors');
  rawSafetensors(
    file,
    {
      'ok.weight': { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      'q.weight': { dtype: 'I8', shape: [4], data_offsets: [8, 12] },
      'odd.weight': { dtype: 'Q4_K', shape: [3], data_offsets: [12, 16] },
    },
    16,
  );
  const st = SafetensorsFile.open(file);
  assert.deepEqual(st.get('ok.weight').data, new Float32Array(2));
  assert.throws(() => st.get('q.weight'), isCode('unknown_dtype', 'q.weight', 'I8', 'F32, F16, BF16', file));
  assert.throws(() => st.get('odd.weight'), isCode('unknown_dtype', 'odd.weight', 'Q4_K'));
});

t.test('malformed headers and missing files get clear errors', async () => {
  const dir = tempDir('bad');
  const file = path.join(dir, 'model.safetensors');
  rawSafetensors(file, { w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8);
  assert.throws(() => SafetensorsFile.open(file), isCode('bad_header', 'tensor w', '[3]'));
  rawSafetensors(file, { w: { dtype: 'F32', shape: [-1], data_offsets: [0, 8] } }, 8);
  assert.throws(() => SafetensorsFile.open(file), isCode('bad_header', 'shape'));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(4n);
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from('{{{{')]));
  assert.throws(() => SafetensorsFile.open(file), isCode('bad_header', 'JSON'));
  assert.throws(() => SafetensorsFile.open(path.join(dir, 'absent.safetensors')), isCode('missing_file', 'absent.safetensors'));
  const empty = tempDir('empty');
  assert.throws(() => openWeights(empty), isCode('missing_file', path.join(empty, 'model.safetensors'), 'model.safetensors.index.json'));
  fs.writeFileSync(path.join(empty, 'pytorch_model.bin'), '');
  assert.throws(() => openWeights(empty), isCode('missing_file', 'pytorch_model.bin'));
});
