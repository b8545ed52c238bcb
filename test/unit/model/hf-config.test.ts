import t from 'tap';
import assert from 'node:assert/strict';
import { CheckpointError, type CheckpointErrorCode } from '../../../src/model/errors.js';
import { parseModelSpec } from '../../../src/model/hf-config.js';

const FILE = '/models/x/config.json';

const LLAMA = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 8,
  intermediate_size: 172,
  vocab_size: 512,
  bos_token_id: 1,
  eos_token_id: 2,
};

function fails(code: CheckpointErrorCode, ...mention: string[]) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof CheckpointError, String(e));
    assert.equal(e.code, code, e.message);
    for (const m of mention) assert.ok(e.message.includes(m), `${JSON.stringify(e.message)} should mention ${m}`);
    return true;
  };
}

t.test('llama defaults: head_dim = hidden/heads, kv heads = heads, HF eps/theta/positions', async () => {
  const s = parseModelSpec(LLAMA, null, FILE);
  assert.equal(s.architecture, 'llama');
  assert.equal(s.headDim, 8);
  assert.equal(s.numKvHeads, 8);
  assert.equal(s.rmsNormEps, 1e-6);
  assert.equal(s.ropeTheta, 10000);
  assert.equal(s.maxPositionEmbeddings, 2048);
  assert.equal(s.ropeScaling, null);
  assert.equal(s.tieWordEmbeddings, false);
  assert.equal(s.attentionBias, false);
  assert.equal(s.outputBias, false);
  assert.equal(s.slidingWindow, null);
  assert.equal(s.bosTokenId, 1);
  assert.deepEqual(s.eosTokenIds, [2]);
  assert.ok(Object.isFrozen(s));
});

t.test('explicit head_dim, GQA and attention_bias (llama: q/k/v and o)', async () => {
  const s = parseModelSpec({ ...LLAMA, head_dim: 16, num_key_value_heads: 2, attention_bias: true, tie_word_embeddings: true }, null, FILE);
  assert.equal(s.headDim, 16);
  assert.equal(s.numKvHeads, 2);
  assert.equal(s.attentionBias, true);
  assert.equal(s.outputBias, true);
  assert.equal(s.tieWordEmbeddings, true);
  assert.equal(parseModelSpec({ ...LLAMA, head_dim: null, num_key_value_heads: null }, null, FILE).headDim, 8);
  assert.throws(() => parseModelSpec({ ...LLAMA, num_key_value_heads: 3 }, null, FILE), fails('bad_config', 'num_key_value_heads', FILE));
});

t.test('rope_scaling: linear (type or rope_type), llama3, default, and unsupported types', async () => {
  assert.deepEqual(parseModelSpec({ ...LLAMA, rope_scaling: { type: 'linear', factor: 2 } }, null, FILE).ropeScaling, { type: 'linear', factor: 2 });
  assert.deepEqual(parseModelSpec({ ...LLAMA, rope_scaling: { rope_type: 'linear', factor: 4 } }, null, FILE).ropeScaling, { type: 'linear', factor: 4 });
  assert.equal(parseModelSpec({ ...LLAMA, rope_scaling: { rope_type: 'default' } }, null, FILE).ropeScaling, null);
  const l3 = { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
  assert.deepEqual(parseModelSpec({ ...LLAMA, rope_scaling: l3 }, null, FILE).ropeScaling, {
    type: 'llama3',
    factor: 32,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositionEmbeddings: 8192,
  });
  const { original_max_position_embeddings: _, ...incomplete } = l3;
  assert.throws(() => parseModelSpec({ ...LLAMA, rope_scaling: incomplete }, null, FILE), fails('bad_config', 'rope_scaling.original_max_position_embeddings'));
  assert.throws(
    () => parseModelSpec({ ...LLAMA, rope_scaling: { type: 'yarn', factor: 4 } }, null, FILE),
    fails('unsupported_config', 'yarn', 'linear, llama3'),
  );
  assert.throws(() => parseModelSpec({ ...LLAMA, rope_scaling: { type: 'dynamic', factor: 2 } }, null, FILE), fails('unsupported_config', 'dynamic'));
  // transformers v5 spelling.
  const v5 = parseModelSpec({ ...LLAMA, rope_parameters: { rope_type: 'linear', factor: 2, rope_theta: 500000 } }, null, FILE);
  assert.equal(v5.ropeTheta, 500000);
  assert.deepEqual(v5.ropeScaling, { type: 'linear', factor: 2 });
});

t.test('qwen2: q/k/v bias, no o bias; sliding window only with use_sliding_window on every layer', async () => {
  const qwen = { ...LLAMA, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', sliding_window: 4096, max_window_layers: 2 };
  const s = parseModelSpec(qwen, null, FILE);
  assert.equal(s.attentionBias, true);
  assert.equal(s.outputBias, false);
  assert.equal(s.slidingWindow, null, 'use_sliding_window defaults to false');
  assert.equal(s.maxPositionEmbeddings, 32768);
  assert.equal(parseModelSpec({ ...qwen, use_sliding_window: true, max_window_layers: 0 }, null, FILE).slidingWindow, 4096);
  assert.equal(parseModelSpec({ ...qwen, use_sliding_window: true, max_window_layers: 2 }, null, FILE).slidingWindow, null);
  assert.throws(
    () => parseModelSpec({ ...qwen, use_sliding_window: true, max_window_layers: 1 }, null, FILE),
    fails('unsupported_config', 'max_window_layers'),
  );
});

t.test('mistral: sliding_window number or null', async () => {
  const mistral = { ...LLAMA, architectures: ['MistralForCausalLM'], model_type: 'mistral' };
  assert.equal(parseModelSpec({ ...mistral, sliding_window: 4096 }, null, FILE).slidingWindow, 4096);
  assert.equal(parseModelSpec({ ...mistral, sliding_window: null }, null, FILE).slidingWindow, null);
  assert.equal(parseModelSpec(mistral, null, FILE).attentionBias, false);
});

t.test('generation_config.json eos_token_id (number or list) overrides config.json', async () => {
  assert.deepEqual(parseModelSpec(LLAMA, { eos_token_id: [2, 1] }, FILE).eosTokenIds, [2, 1]);
  assert.deepEqual(parseModelSpec(LLAMA, { eos_token_id: 7 }, FILE).eosTokenIds, [7]);
  assert.deepEqual(parseModelSpec(LLAMA, { temperature: 0.7 }, FILE).eosTokenIds, [2]);
  assert.deepEqual(parseModelSpec({ ...LLAMA, eos_token_id: [2, 3, 2] }, null, FILE).eosTokenIds, [2, 3]);
  assert.throws(() => parseModelSpec(LLAMA, { eos_token_id: 'x' }, FILE), fails('bad_config', 'generation_config.json', 'eos_token_id'));
});

t.test('unsupported architectures name the model_type and the supported ones', async () => {
  assert.throws(
    () => parseModelSpec({ ...LLAMA, model_type: 'gpt2', architectures: ['GPT2LMHeadModel'] }, null, FILE),
    fails('unsupported_architecture', '"gpt2"', 'llama (LlamaForCausalLM)', 'qwen2', 'mistral', FILE),
  );
  assert.throws(
    () => parseModelSpec({ ...LLAMA, architectures: ['LlamaForSequenceClassification'] }, null, FILE),
    fails('unsupported_architecture', 'LlamaForSequenceClassification'),
  );
});

t.test('missing or invalid fields are bad_config naming field and file', async () => {
  for (const field of ['hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size', 'vocab_size']) {
    const config: Record<string, unknown> = { ...LLAMA };
    delete config[field];
    assert.throws(() => parseModelSpec(config, null, FILE), fails('bad_config', field, FILE, 'missing'));
  }
  assert.throws(() => parseModelSpec({ ...LLAMA, hidden_size: 64.5 }, null, FILE), fails('bad_config', 'hidden_size', '64.5'));
  assert.throws(() => parseModelSpec({ ...LLAMA, model_type: undefined }, null, FILE), fails('bad_config', 'model_type'));
  assert.throws(() => parseModelSpec([], null, FILE), fails('bad_config', FILE));
  assert.throws(() => parseModelSpec({ ...LLAMA, hidden_act: 'gelu' }, null, FILE), fails('unsupported_config', 'gelu'));
  assert.throws(() => parseModelSpec({ ...LLAMA, mlp_bias: true }, null, FILE), fails('unsupported_config', 'mlp_bias'));
  assert.throws(() => parseModelSpec({ ...LLAMA, hidden_size: 60 }, null, FILE), fails('bad_config', 'divisible'));
});

const QWEN3 = {
  architectures: ['Qwen3ForCausalLM'],
  model_type: 'qwen3',
  hidden_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  intermediate_size: 128,
  vocab_size: 512,
};

t.test(
  'qwen3: q/k norms, head_dim defaults to 128 (not hidden/heads), no bias unless attention_bias (then o too), sliding only with use_sliding_window',
  async () => {
    const s = parseModelSpec(QWEN3, null, FILE);
    assert.equal(s.architecture, 'qwen3');
    assert.equal(s.headDim, 128);
    assert.equal(s.rotaryDim, 128);
    assert.equal(s.qkNorm, true);
    assert.equal(s.attentionBias, false);
    assert.equal(s.outputBias, false);
    assert.equal(s.packedProjections, false);
    assert.deepEqual(s.ropeLayers, [true, true]);
    assert.equal(s.maxPositionEmbeddings, 32768);
    assert.equal(parseModelSpec({ ...QWEN3, head_dim: 24 }, null, FILE).headDim, 24);
    const biased = parseModelSpec({ ...QWEN3, attention_bias: true }, null, FILE);
    assert.equal(biased.attentionBias, true);
    assert.equal(biased.outputBias, true);
    assert.equal(parseModelSpec({ ...QWEN3, sliding_window: 8, max_window_layers: 0 }, null, FILE).slidingWindow, null);
    assert.equal(parseModelSpec({ ...QWEN3, use_sliding_window: true, sliding_window: 8, max_window_layers: 0 }, null, FILE).slidingWindow, 8);
    assert.throws(
      () => parseModelSpec({ ...QWEN3, use_sliding_window: true, sliding_window: 8, max_window_layers: 1 }, null, FILE),
      fails('unsupported_config', 'sliding-window'),
    );
  },
);

t.test('smollm3: NoPE every no_rope_layer_interval-th layer ((i + 1) % interval == 0), or no_rope_layers (1 = RoPE, 0 = NoPE)', async () => {
  const base = { ...QWEN3, architectures: ['SmolLM3ForCausalLM'], model_type: 'smollm3', num_hidden_layers: 8 };
  const s = parseModelSpec(base, null, FILE);
  assert.equal(s.headDim, 16);
  assert.equal(s.ropeTheta, 2000000);
  assert.equal(s.qkNorm, false);
  assert.deepEqual(s.ropeLayers, [true, true, true, false, true, true, true, false]);
  assert.deepEqual(parseModelSpec({ ...base, no_rope_layer_interval: 3 }, null, FILE).ropeLayers, [true, true, false, true, true, false, true, true]);
  assert.deepEqual(parseModelSpec({ ...base, no_rope_layers: [0, 1, 1, 1, 0, 1, 1, 1, 1] }, null, FILE).ropeLayers, [
    false,
    true,
    true,
    true,
    false,
    true,
    true,
    true,
  ]);
  const biased = parseModelSpec({ ...base, attention_bias: true }, null, FILE);
  assert.equal(biased.attentionBias, false, 'q/k/v never carry a bias in SmolLM3');
  assert.equal(biased.outputBias, true);
  assert.throws(() => parseModelSpec({ ...base, no_rope_layers: [1, 0] }, null, FILE), fails('bad_config', 'no_rope_layers', '8 layers'));
  assert.throws(() => parseModelSpec({ ...base, no_rope_layers: [2, 1, 1, 1, 1, 1, 1, 1] }, null, FILE), fails('bad_config', 'no_rope_layers'));
  // Sliding windows apply to the NoPE layers only: a mix with full RoPE layers is refused by name.
  assert.equal(parseModelSpec({ ...base, sliding_window: 16 }, null, FILE).slidingWindow, null);
  assert.throws(() => parseModelSpec({ ...base, use_sliding_window: true, sliding_window: 16 }, null, FILE), fails('unsupported_config', 'NoPE'));
});

t.test('phi3: fused projections, partial_rotary_factor, longrope (factor lengths, attention factor as transformers), su/yarn spellings', async () => {
  const base = {
    ...QWEN3,
    architectures: ['Phi3ForCausalLM'],
    model_type: 'phi3',
    max_position_embeddings: 131072,
    original_max_position_embeddings: 4096,
    partial_rotary_factor: 0.75,
    rope_scaling: { type: 'longrope', short_factor: [1, 1, 1, 1, 1, 1], long_factor: [1, 2, 3, 4, 5, 6] },
  };
  const s = parseModelSpec(base, null, FILE);
  assert.equal(s.packedProjections, true);
  assert.equal(s.headDim, 16);
  assert.equal(s.rotaryDim, 12);
  assert.equal(s.rmsNormEps, 1e-5);
  const rs = s.ropeScaling;
  assert.ok(rs?.type === 'longrope');
  assert.equal(rs.originalMaxPositionEmbeddings, 4096);
  assert.ok(Math.abs(rs.attentionFactor - Math.sqrt(1 + Math.log(32) / Math.log(4096))) < 1e-12);
  assert.deepEqual(rs.longFactor, [1, 2, 3, 4, 5, 6]);
  const su = parseModelSpec({ ...base, rope_scaling: { ...base.rope_scaling, type: 'su', attention_factor: 1.5 } }, null, FILE).ropeScaling;
  assert.ok(su?.type === 'longrope' && su.attentionFactor === 1.5);
  assert.equal(parseModelSpec({ ...base, rope_scaling: null, partial_rotary_factor: undefined }, null, FILE).rotaryDim, 16);
  assert.equal(parseModelSpec({ ...base, sliding_window: 2047 }, null, FILE).slidingWindow, 2047);
  assert.throws(
    () => parseModelSpec({ ...base, rope_scaling: { ...base.rope_scaling, short_factor: [1, 1] } }, null, FILE),
    fails('bad_config', 'short_factor', '6 values'),
  );
  assert.throws(() => parseModelSpec({ ...base, partial_rotary_factor: 0.1 }, null, FILE), fails('bad_config', 'partial_rotary_factor'));
  assert.throws(() => parseModelSpec({ ...LLAMA, rope_scaling: base.rope_scaling }, null, FILE), fails('unsupported_config', 'longrope'));
});

const GEMMA3 = {
  architectures: ['Gemma3ForCausalLM'],
  model_type: 'gemma3_text',
  hidden_size: 64,
  num_hidden_layers: 7,
  num_attention_heads: 4,
  num_key_value_heads: 1,
  intermediate_size: 128,
  vocab_size: 512,
};

t.test(
  'gemma3_text: 5 sliding per full layer, RoPE per layer type (both spellings), (1+w) norms, scaled embeddings, GELU-tanh, query_pre_attn_scalar',
  async () => {
    const s = parseModelSpec(GEMMA3, null, FILE);
    assert.equal(s.headDim, 256);
    assert.deepEqual(s.layerWindows, [4096, 4096, 4096, 4096, 4096, null, 4096]);
    assert.equal(s.slidingWindow, null);
    assert.equal(s.ropeTheta, 1000000);
    assert.deepEqual(s.slidingRope, { theta: 10000, scaling: null });
    assert.equal(s.qkNorm, true);
    assert.equal(s.normUnitOffset, true);
    assert.equal(s.sandwichNorms, true);
    assert.equal(s.hiddenAct, 'gelu_tanh');
    assert.equal(s.embedScale, Math.fround(8));
    assert.equal(s.attentionScale, 1 / 16);
    assert.equal(s.tieWordEmbeddings, true);
    assert.equal(s.attnLogitSoftcap, null);
    assert.equal(s.finalLogitSoftcap, null);
    const old = parseModelSpec(
      { ...GEMMA3, query_pre_attn_scalar: 144, rope_scaling: { rope_type: 'linear', factor: 8 }, rope_local_base_freq: 20000, sliding_window: 512 },
      null,
      FILE,
    );
    assert.deepEqual(old.ropeScaling, { type: 'linear', factor: 8 });
    assert.deepEqual(old.slidingRope, { theta: 20000, scaling: null });
    assert.equal(old.attentionScale, 1 / 12);
    assert.equal(old.layerWindows[0], 512);
    const v5 = parseModelSpec(
      {
        ...GEMMA3,
        rope_parameters: {
          full_attention: { rope_type: 'linear', factor: 4, rope_theta: 500000 },
          sliding_attention: { rope_type: 'default', rope_theta: 30000 },
        },
      },
      null,
      FILE,
    );
    assert.equal(v5.ropeTheta, 500000);
    assert.deepEqual(v5.ropeScaling, { type: 'linear', factor: 4 });
    assert.deepEqual(v5.slidingRope, { theta: 30000, scaling: null });
    assert.deepEqual(parseModelSpec({ ...GEMMA3, num_hidden_layers: 2, layer_types: ['full_attention', 'sliding_attention'] }, null, FILE).layerWindows, [
      null,
      4096,
    ]);
    assert.throws(() => parseModelSpec({ ...GEMMA3, layer_types: ['full_attention'] }, null, FILE), fails('bad_config', 'layer_types', '7 layers'));
    assert.throws(() => parseModelSpec({ ...GEMMA3, hidden_activation: 'gelu' }, null, FILE), fails('unsupported_config', 'hidden_activation'));
    assert.throws(
      () => parseModelSpec({ ...GEMMA3, use_bidirectional_attention: true }, null, FILE),
      fails('unsupported_config', 'use_bidirectional_attention'),
    );
    assert.throws(
      () => parseModelSpec({ ...GEMMA3, architectures: ['Gemma3ForConditionalGeneration'], model_type: 'gemma3' }, null, FILE),
      fails('unsupported_architecture', 'gemma3'),
    );
  },
);

t.test('gemma2: alternating sliding layers, one RoPE, soft-capping 50 / 30 unless set or null', async () => {
  const g2 = { ...GEMMA3, architectures: ['Gemma2ForCausalLM'], model_type: 'gemma2', num_hidden_layers: 4, hidden_act: 'gelu_pytorch_tanh' };
  const s = parseModelSpec(g2, null, FILE);
  assert.deepEqual(s.layerWindows, [4096, null, 4096, null]);
  assert.equal(s.slidingRope, null);
  assert.equal(s.ropeTheta, 10000);
  assert.equal(s.qkNorm, false);
  assert.equal(s.attnLogitSoftcap, 50);
  assert.equal(s.finalLogitSoftcap, 30);
  const off = parseModelSpec({ ...g2, attn_logit_softcapping: null, final_logit_softcapping: 20 }, null, FILE);
  assert.equal(off.attnLogitSoftcap, null);
  assert.equal(off.finalLogitSoftcap, 20);
  // The same window on every layer is Mistral-style.
  assert.equal(parseModelSpec({ ...g2, layer_types: Array(4).fill('sliding_attention'), sliding_window: 64 }, null, FILE).slidingWindow, 64);
});
