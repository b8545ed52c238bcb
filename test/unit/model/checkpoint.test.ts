import t from 'tap';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { loadCheckpoint } from '../../../src/model/checkpoint.js';
import { createModel } from '../../../src/model/create/create-model.js';
import { CheckpointError, type CheckpointErrorCode } from '../../../src/model/errors.js';
import { SafetensorsFile, writeSafetensors } from '../../../src/model/safetensors.js';
import { MISSING_SHARED, sharedPath, tempDir } from './fixtures.js';

function fails(code: CheckpointErrorCode, ...mention: string[]) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof CheckpointError, String(e));
    assert.equal(e.code, code, e.message);
    for (const m of mention) assert.ok(e.message.includes(m), `${JSON.stringify(e.message)} should mention ${m}`);
    return true;
  };
}

let pristine: string | null = null;

/** A fresh copy of one generated llama tiny model, to corrupt. */
async function copyOfTiny(): Promise<string> {
  pristine ??= (await createModel({ arch: 'llama', preset: 'tiny', seed: 11, out: tempDir('ck-pristine') })).dir;
  const dir = tempDir('ck-copy');
  fs.cpSync(pristine, dir, { recursive: true });
  return dir;
}

/** Rewrites model.safetensors through fn, which may change, add or delete tensors. */
function rewriteWeights(dir: string, fn: (t: Map<string, { shape: number[]; data: Float32Array }>) => void): void {
  const file = path.join(dir, 'model.safetensors');
  const st = SafetensorsFile.open(file);
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const n of st.names()) {
    const t = st.get(n);
    tensors.set(n, { shape: [...t.shape], data: t.data });
  }
  fn(tensors);
  writeSafetensors(file, tensors, 'F32');
}

t.test('stories260K loads: spec, tied embeddings, eos from generation_config, no chat template', async (t) => {
  const dir = sharedPath('models', 'stories260K');
  if (dir === null) return t.plan(0, MISSING_SHARED);
  const ck = loadCheckpoint(dir);
  assert.equal(ck.dir, path.resolve(dir));
  assert.deepEqual(
    { ...ck.spec },
    {
      architecture: 'llama',
      hiddenSize: 64,
      numLayers: 5,
      numHeads: 8,
      numKvHeads: 4,
      headDim: 8,
      intermediateSize: 172,
      vocabSize: 512,
      rmsNormEps: 1e-5,
      ropeTheta: 10000,
      ropeScaling: null,
      rotaryDim: 8,
      ropeLayers: [true, true, true, true, true],
      qkNorm: false,
      packedProjections: false,
      layerWindows: [null, null, null, null, null],
      slidingRope: null,
      normUnitOffset: false,
      embedScale: 1,
      hiddenAct: 'silu',
      sandwichNorms: false,
      attentionScale: 1 / Math.sqrt(8),
      attnLogitSoftcap: null,
      finalLogitSoftcap: null,
      maxPositionEmbeddings: 512,
      tieWordEmbeddings: true,
      attentionBias: false,
      outputBias: false,
      slidingWindow: null,
      bosTokenId: 1,
      eosTokenIds: [2, 1],
    },
  );
  assert.equal(ck.chatTemplate, null);
  assert.equal(ck.tokenizer.vocabSize, 512);
  assert.equal(ck.weights.has('lm_head.weight'), false);
  assert.deepEqual(ck.weights.get('model.embed_tokens.weight').shape, [512, 64]);
  assert.match(ck.contentHash(), /^[0-9a-f]{64}$/);
  assert.equal(ck.contentHash(), loadCheckpoint(dir).contentHash());
});

t.test('contentHash follows the bytes of config and weights, not the directory', async () => {
  const a = await copyOfTiny();
  const b = await copyOfTiny();
  const hash = loadCheckpoint(a).contentHash();
  assert.equal(loadCheckpoint(b).contentHash(), hash);
  rewriteWeights(b, (t) => {
    t.get('model.norm.weight')!.data[0]! += 1;
  });
  assert.notEqual(loadCheckpoint(b).contentHash(), hash);
  const c = await copyOfTiny();
  fs.writeFileSync(path.join(c, 'generation_config.json'), JSON.stringify({ eos_token_id: 1 }));
  assert.notEqual(loadCheckpoint(c).contentHash(), hash);
  const d = await copyOfTiny();
  fs.writeFileSync(path.join(d, 'tokenizer_config.json'), '{}');
  assert.equal(loadCheckpoint(d).contentHash(), hash, 'tokenizer files do not change the compiled graph');
});

t.test('a tensor with the wrong shape is bad_shape naming file, tensor, expected and actual', async () => {
  const dir = await copyOfTiny();
  rewriteWeights(dir, (t) => t.set('model.layers.1.self_attn.k_proj.weight', { shape: [64, 32], data: new Float32Array(64 * 32) }));
  assert.throws(
    () => loadCheckpoint(dir),
    fails('bad_shape', path.join(dir, 'model.safetensors'), 'model.layers.1.self_attn.k_proj.weight', '[64, 32]', '[32, 64]'),
  );
});

t.test('a missing tensor is missing_tensor naming it', async () => {
  const dir = await copyOfTiny();
  rewriteWeights(dir, (t) => t.delete('lm_head.weight'));
  assert.throws(() => loadCheckpoint(dir), fails('missing_tensor', 'lm_head.weight', '[512, 64]'));
});

t.test('missing config.json, tokenizer.json or weights are missing_file naming the path', async () => {
  for (const file of ['config.json', 'tokenizer.json', 'model.safetensors']) {
    const dir = await copyOfTiny();
    fs.rmSync(path.join(dir, file));
    assert.throws(() => loadCheckpoint(dir), fails('missing_file', path.join(dir, file)));
  }
  assert.throws(() => loadCheckpoint(path.join(tempDir('ck-none'), 'nope')), fails('missing_file', 'nope'));
});

t.test('an unsupported architecture is refused by name', async () => {
  const dir = await copyOfTiny();
  const configFile = path.join(dir, 'config.json');
  const config = JSON.parse(fs.readFileSync(configFile, 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(configFile, JSON.stringify({ ...config, model_type: 'olmoe', architectures: ['OlmoeForCausalLM'] }));
  assert.throws(() => loadCheckpoint(dir), fails('unsupported_architecture', 'olmoe', 'llama', 'qwen2', 'mistral', 'mixtral', 'qwen2_moe', configFile));
});

t.test('a tokenizer larger than the model vocabulary is vocab_mismatch', async () => {
  const dir = await copyOfTiny();
  const configFile = path.join(dir, 'config.json');
  const config = JSON.parse(fs.readFileSync(configFile, 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(configFile, JSON.stringify({ ...config, vocab_size: 400 }));
  rewriteWeights(dir, (t) => {
    t.set('model.embed_tokens.weight', { shape: [400, 64], data: new Float32Array(400 * 64) });
    t.set('lm_head.weight', { shape: [400, 64], data: new Float32Array(400 * 64) });
  });
  assert.throws(() => loadCheckpoint(dir), fails('vocab_mismatch', '512', '400'));
});

t.test('a sharded copy loads through the index and hashes the index too', async () => {
  const dir = await copyOfTiny();
  const single = loadCheckpoint(dir);
  const singleHash = single.contentHash();
  const a = single.weights.get('model.layers.0.mlp.up_proj.weight').data;
  const st = SafetensorsFile.open(path.join(dir, 'model.safetensors'));
  const names = [...st.names()].sort();
  const weightMap: Record<string, string> = {};
  const shards = [new Map<string, { shape: number[]; data: Float32Array }>(), new Map<string, { shape: number[]; data: Float32Array }>()];
  names.forEach((n, i) => {
    const shard = i < names.length / 2 ? 0 : 1;
    const t = st.get(n);
    shards[shard]!.set(n, { shape: [...t.shape], data: t.data });
    weightMap[n] = `model-0000${shard + 1}-of-00002.safetensors`;
  });
  shards.forEach((m, i) => writeSafetensors(path.join(dir, `model-0000${i + 1}-of-00002.safetensors`), m, 'BF16'));
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  fs.rmSync(path.join(dir, 'model.safetensors'));
  const sharded = loadCheckpoint(dir);
  assert.deepEqual(sharded.spec, single.spec);
  assert.equal(sharded.weights.files.length, 2);
  const b = sharded.weights.get('model.layers.0.mlp.up_proj.weight').data;
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= Math.abs(a[i]!) * 2 ** -8);
  const hash = sharded.contentHash();
  assert.notEqual(hash, singleHash);
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 1 }, weight_map: weightMap }));
  assert.notEqual(loadCheckpoint(dir).contentHash(), hash);
});
