/** MoE architectures: config.json -> ModelSpec.moe, the tensor list they imply, and refusals by name. */
import assert from 'node:assert/strict';
import t from 'tap';
import { CheckpointError } from '../../../src/model/errors.js';
import { parseModelSpec } from '../../../src/model/hf-config.js';
import { presetConfig } from '../../../src/model/create/presets.js';
import { expectedTensors } from '../../../src/model/tensor-layout.js';

const FILE = '/models/x/config.json';

const MIXTRAL = {
  architectures: ['MixtralForCausalLM'],
  model_type: 'mixtral',
  hidden_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  intermediate_size: 96,
  vocab_size: 512,
  num_local_experts: 4,
  num_experts_per_tok: 2,
  sliding_window: null,
};

const QWEN2_MOE = {
  architectures: ['Qwen2MoeForCausalLM'],
  model_type: 'qwen2_moe',
  hidden_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  intermediate_size: 256,
  moe_intermediate_size: 32,
  shared_expert_intermediate_size: 128,
  vocab_size: 512,
  num_experts: 6,
  num_experts_per_tok: 3,
  norm_topk_prob: true,
};

function fails(code: string, ...mention: string[]) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof CheckpointError, String(e));
    assert.equal(e.code, code, e.message);
    for (const m of mention) assert.ok(e.message.includes(m), `${e.message} should mention ${m}`);
    return true;
  };
}

t.test('mixtral: experts of intermediate_size, top-k renormalised, Mixtral defaults', async () => {
  const s = parseModelSpec(MIXTRAL, null, FILE);
  assert.deepEqual(s.moe, { numExperts: 4, topK: 2, expertIntermediateSize: 96, normTopKProb: true, sharedExpertIntermediateSize: null });
  assert.equal(s.ropeTheta, 1e6);
  assert.equal(s.rmsNormEps, 1e-5);
  assert.equal(s.slidingWindow, null);
  assert.equal(s.attentionBias, false);
  const names = expectedTensors(s).map((t) => t.name);
  assert.ok(names.includes('model.layers.1.block_sparse_moe.gate.weight'));
  assert.ok(names.includes('model.layers.1.block_sparse_moe.experts.3.w2.weight'));
  assert.ok(!names.some((n) => n.includes('mlp.gate_proj')));
  assert.equal(parseModelSpec({ ...MIXTRAL, sliding_window: 32 }, null, FILE).slidingWindow, 32);
});

t.test('qwen2_moe: moe_intermediate_size experts, norm_topk_prob, shared expert and its gate, q/k/v bias', async () => {
  const s = parseModelSpec(QWEN2_MOE, null, FILE);
  assert.deepEqual(s.moe, { numExperts: 6, topK: 3, expertIntermediateSize: 32, normTopKProb: true, sharedExpertIntermediateSize: 128 });
  assert.equal(s.attentionBias, true);
  assert.equal(parseModelSpec({ ...QWEN2_MOE, norm_topk_prob: undefined }, null, FILE).moe?.normTopKProb, false);
  const t = new Map(expectedTensors(s).map((x) => [x.name, x.shape]));
  assert.deepEqual(t.get('model.layers.0.mlp.gate.weight'), [6, 64]);
  assert.deepEqual(t.get('model.layers.0.mlp.experts.5.down_proj.weight'), [64, 32]);
  assert.deepEqual(t.get('model.layers.0.mlp.shared_expert.up_proj.weight'), [128, 64]);
  assert.deepEqual(t.get('model.layers.0.mlp.shared_expert_gate.weight'), [1, 64]);
  assert.equal(parseModelSpec({ ...QWEN2_MOE, shared_expert_intermediate_size: 0 }, null, FILE).moe?.sharedExpertIntermediateSize, null);
});

t.test('MoE configs we cannot run faithfully are refused by name', async () => {
  assert.throws(
    () => parseModelSpec({ ...MIXTRAL, num_experts_per_tok: 5 }, null, FILE),
    fails('bad_config', 'num_experts_per_tok (5)', 'num_local_experts (4)', FILE),
  );
  assert.throws(() => parseModelSpec({ ...QWEN2_MOE, decoder_sparse_step: 2 }, null, FILE), fails('unsupported_config', 'decoder_sparse_step 2'));
  assert.throws(() => parseModelSpec({ ...QWEN2_MOE, mlp_only_layers: [1] }, null, FILE), fails('unsupported_config', 'mlp_only_layers [1]'));
  assert.throws(() => parseModelSpec({ ...QWEN2_MOE, moe_intermediate_size: undefined }, null, FILE), fails('bad_config', 'moe_intermediate_size'));
  assert.throws(() => parseModelSpec({ ...QWEN2_MOE, mlp_only_layers: 'x' }, null, FILE), fails('bad_config', 'mlp_only_layers'));
});

t.test('presets: tiny/small/135m MoE shapes parse; 135m expert bytes dwarf the rest', async () => {
  for (const arch of ['mixtral', 'qwen2_moe'] as const) {
    for (const preset of ['tiny', 'small', '135m'] as const) {
      const s = parseModelSpec(presetConfig(arch, preset), null, FILE);
      assert.ok(s.moe, `${arch} ${preset}`);
      if (preset === '135m') {
        let expert = 0;
        let other = 0;
        for (const t of expectedTensors(s)) {
          const n = t.shape.reduce((a, b) => a * b, 1);
          if (t.name.includes('.experts.')) expert += n;
          else other += n;
        }
        assert.ok(expert > 4 * other, `${arch}: ${expert} expert vs ${other} other parameters`);
      }
    }
  }
});

t.test(
  'qwen3_moe: 128 experts top-8 of 768 by default, norm_topk_prob, no shared expert, q/k norms; dense layers and sliding windows refused by name',
  async () => {
    const base = {
      architectures: ['Qwen3MoeForCausalLM'],
      model_type: 'qwen3_moe',
      hidden_size: 64,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 24,
      intermediate_size: 256,
      vocab_size: 512,
    };
    const s = parseModelSpec(base, null, FILE);
    assert.deepEqual({ ...s.moe }, { numExperts: 128, topK: 8, expertIntermediateSize: 768, normTopKProb: false, sharedExpertIntermediateSize: null });
    assert.equal(s.qkNorm, true);
    assert.equal(s.headDim, 24);
    assert.equal(s.attentionBias, false);
    const t = parseModelSpec(
      { ...base, num_experts: 4, num_experts_per_tok: 2, moe_intermediate_size: 32, norm_topk_prob: true, shared_expert_intermediate_size: 64 },
      null,
      FILE,
    );
    assert.equal(t.moe?.normTopKProb, true);
    assert.equal(t.moe?.sharedExpertIntermediateSize, null, 'Qwen3-MoE has no shared expert whatever the config says');
    const names = expectedTensors(t).map((x) => x.name);
    assert.ok(names.includes('model.layers.1.mlp.experts.3.down_proj.weight'));
    assert.ok(names.includes('model.layers.0.self_attn.q_norm.weight'));
    assert.ok(!names.some((n) => n.includes('shared_expert')));
    const refused = (extra: Record<string, unknown>, ...mention: string[]): void =>
      assert.throws(
        () => parseModelSpec({ ...base, ...extra }, null, FILE),
        (e: unknown) => e instanceof CheckpointError && e.code === 'unsupported_config' && mention.every((m) => e.message.includes(m)),
      );
    refused({ mlp_only_layers: [1] }, 'mlp_only_layers', 'Qwen3-MoE');
    refused({ decoder_sparse_step: 2 }, 'decoder_sparse_step');
    refused({ use_sliding_window: true, sliding_window: 16 }, 'use_sliding_window');
    assert.equal(parseModelSpec(presetConfig('qwen3_moe', 'tiny'), null, FILE).moe?.normTopKProb, true);
  },
);
