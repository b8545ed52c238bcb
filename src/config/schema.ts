import { Type, type Static } from '@sinclair/typebox';
import { OverflowSchema } from '../policies/overflow/schema.js';

/**
 * The config file's shape. Every object is closed (additionalProperties: false)
 * so a misspelled key is an error, never silently dropped. Defaults live here so
 * the file, the flags and the docs agree on one source.
 */
const ModelSection = Type.Object(
  {
    dir: Type.String({
      minLength: 1,
      default: '.cache/models/default',
      description: 'Hugging Face model directory (relative paths resolve against the working directory).',
    }),
    servedModelName: Type.Union([Type.String({ minLength: 1 }), Type.Null()], { default: null, description: 'Model id on the API; null: the directory name.' }),
    weightDtype: Type.Union([Type.Literal('fp32'), Type.Literal('int8'), Type.Literal('int4'), Type.Literal('w8a8')], {
      default: 'fp32',
      description:
        "Dense weights: 'fp32'; 'int8' / 'int4' in blocks of quantBlockSize (MatMulNBits); 'w8a8' int8 per output channel with int8 activations per token through the integer GEMM: int8's bytes and decode speed, about twice its prefill speed, a larger error (see README).",
    }),
    quantBlockSize: Type.Union([Type.Literal(16), Type.Literal(32), Type.Literal(64), Type.Literal(128), Type.Null()], {
      default: null,
      description:
        'Weights per quantization block (one scale each) of int8/int4 dense models (w8a8: its token embedding only): larger blocks decode faster and err more (see README). null: by dtype, int8 and w8a8 64, int4 32.',
    }),
    chatTemplateFallback: Type.Union([Type.String({ minLength: 1 }), Type.Null()], {
      default: null,
      description: "Chat template used when the model ships none: 'chatml' or an inline Jinja template. null: chat completions answer 400.",
    }),
    toolCallFormat: Type.Union([Type.Literal('hermes'), Type.Literal('llama3'), Type.Literal('mistral'), Type.Null()], {
      default: null,
      description: "How tool calls are written (grammar) and parsed: 'hermes', 'llama3' or 'mistral'. null: the chat template's (Hermes when it has none).",
    }),
    contextLength: Type.Optional(Type.Integer({ minimum: 1, description: "Caps the model's context length." })),
    overflow: { ...OverflowSchema, default: 'error' },
  },
  { additionalProperties: false, default: {} },
);

const ServerSection = Type.Object(
  {
    host: Type.String({ minLength: 1, default: '127.0.0.1' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 8000 }),
    apiKeys: Type.Array(Type.String({ minLength: 1 }), { default: [], description: 'Bearer keys; empty: no auth.' }),
    publicPaths: Type.Array(Type.String({ pattern: '^/[^?#]*$' }), {
      default: ['/health', '/metrics'],
      uniqueItems: true,
      description: 'Paths answered without a key when apiKeys is set (exact match, no query string); []: every path needs a key.',
    }),
    maxConcurrent: Type.Integer({ minimum: 1, default: 8, description: 'Sequences decoded together.' }),
    maxQueue: Type.Integer({ minimum: 0, default: 64, description: 'Requests waiting beyond maxConcurrent before 429.' }),
    bodyLimitBytes: Type.Integer({ minimum: 1024, default: 4 * 1024 * 1024 }),
    shutdownGraceMs: Type.Integer({ minimum: 0, default: 30_000 }),
    requestTimeoutMs: Type.Optional(Type.Integer({ minimum: 1, description: 'Generation deadline per request; absent: none.' })),
    playground: Type.Optional(Type.Boolean({ description: 'The browser playground at /; absent: on when apiKeys is empty, off when keys are set.' })),
  },
  { additionalProperties: false, default: {} },
);

const MemorySection = Type.Object(
  {
    kvBudgetBytes: Type.Integer({ minimum: 1, default: 256 * 1024 * 1024 }),
    kvDtype: Type.Union([Type.Literal('fp32'), Type.Literal('fp16')], {
      default: 'fp32',
      description:
        'Storage type of the KV cache: fp16 holds twice the tokens in kvBudgetBytes (dense models; the graph casts the past to fp32 before attention).',
    }),
  },
  { additionalProperties: false, default: {} },
);

const PrefixCacheSection = Type.Object(
  {
    enabled: Type.Boolean({
      default: true,
      description: 'Share the KV of repeated prompt prefixes (system prompts, earlier chat turns) across requests whose policy keeps the prefix intact.',
    }),
    blockTokens: Type.Integer({ minimum: 1, maximum: 4096, default: 16, description: 'Tokens per cached block: the unit of reuse.' }),
    budgetShare: Type.Number({
      exclusiveMinimum: 0,
      maximum: 1,
      default: 0.5,
      description: 'Share of memory.kvBudgetBytes the cache may hold; its blocks count in the budget and give way to admissions.',
    }),
  },
  { additionalProperties: false, default: {} },
);

const EngineSection = Type.Object(
  {
    threads: Type.Integer({ minimum: 0, default: 0, description: 'Intra-op threads for inference; 0: runtime default.' }),
    threadSpinning: Type.Boolean({
      default: true,
      description:
        "Let onnxruntime's intra-op threads spin-wait between kernels (its own default). false: they sleep between kernels, leaving the cores to other threads: 1.1-1.25x slower steps on an idle machine; through the real server on 2 cores, better inter-token latency p99 at 8 streams but lower throughput at 1, 32 and 64; with the engine in the clients' own process, about 2x the throughput.",
    }),
    maxTokensPerStep: Type.Integer({
      minimum: 0,
      default: 64,
      description:
        'Tokens one engine step runs while requests decode: their decode tokens plus bounded prefill chunks (chunked-prefill scheduling); the prefill share is raised to 1.5x the prompt tokens the decoding streams bring (the measured prompt-to-output ratio), so prompts keep pace. 0: a whole prefillChunk per step.',
    }),
    stepTargetMs: Type.Number({
      minimum: 0,
      default: 0,
      description:
        'Step latency target (ms) while requests decode: prefill chunks are sized by measured pass costs to fit what the decode passes leave of it (at least as long as the decode passes); maxTokensPerStep applies until costs are measured. 0: the token budget alone.',
    }),
    prefillChunk: Type.Integer({
      minimum: 1,
      default: 512,
      description: 'Largest prefill pass (a chunk, or a padded batch of fresh prompts) when nothing decodes, or with maxTokensPerStep 0.',
    }),
    prefixCache: PrefixCacheSection,
  },
  { additionalProperties: false, default: {} },
);

const Axis = Type.Union([Type.Literal('C'), Type.Literal('A'), Type.Literal('P')]);
/** At most two axes: a policy serves two of C, A, P and pays with the third. */
export const FavorSchema = Type.Array(Axis, { minItems: 1, maxItems: 2, uniqueItems: true });

const RuleMatch = Type.Object(
  {
    minPromptTokens: Type.Optional(Type.Integer({ minimum: 0, description: 'Matches prompts of at least this many tokens.' })),
    maxPromptTokens: Type.Optional(Type.Integer({ minimum: 0, description: 'Matches prompts of at most this many tokens.' })),
    header: Type.Optional(
      Type.Object(
        {
          name: Type.String({ pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", description: 'HTTP header name (case-insensitive).' }),
          value: Type.String({ description: 'Exact value the header must have.' }),
        },
        { additionalProperties: false },
      ),
    ),
    apiKey: Type.Optional(Type.String({ minLength: 1, description: 'The Bearer key the request came with (a tenant).' })),
    /** Matches requests whose cap.favor lists only axes listed here. */
    favor: Type.Optional(FavorSchema),
  },
  { additionalProperties: false },
);

const RoutingRule = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1 })),
    match: RuleMatch,
    policy: Type.String({ minLength: 1 }),
    /** Overrides model.overflow for requests this rule routes. */
    overflow: Type.Optional(OverflowSchema),
  },
  { additionalProperties: false },
);

const RoutingSection = Type.Object(
  {
    defaultPolicy: Type.String({ minLength: 1, default: 'full', description: 'Serves requests no rule matches; must name a loaded policy.' }),
    allowRequestOverride: Type.Union([Type.Boolean(), Type.Array(Type.String({ minLength: 1 }), { uniqueItems: true })], {
      default: true,
      description:
        'Which policies a request may name (cap.policy or x-capserve-policy) or reach through cap.favor: true all, false none, or a list (in order of preference).',
    }),
    rules: Type.Array(RoutingRule, { default: [], description: 'Ordered; the first rule whose every condition matches picks the policy.' }),
  },
  { additionalProperties: false, default: {} },
);

/** Per-policy overrides (`--set policies.NAME.params.KEY=VALUE`), applied to the loaded file and re-validated. */
const PolicyOverride = Type.Object({ params: Type.Object({}, { additionalProperties: true, default: {} }) }, { additionalProperties: false });

const PoliciesSection = Type.Object(
  {
    dir: Type.String({
      minLength: 1,
      default: 'policies',
      description: 'Directory of policy files (*.yaml); relative paths resolve against the working directory.',
    }),
  },
  { additionalProperties: PolicyOverride, default: {} },
);

const ShadowSection = Type.Object(
  {
    sampleRate: Type.Number({
      minimum: 0,
      maximum: 1,
      default: 0.05,
      description: 'Fraction of requests served by a non-full policy whose fidelity is measured against the full cache.',
    }),
    maxQueued: Type.Integer({ minimum: 1, default: 4, description: 'Re-scores waiting or running at once; more are dropped (and counted).' }),
    maxTokens: Type.Integer({ minimum: 1, default: 64, description: 'Generated steps compared per request (the first ones).' }),
    maxCaptureTokens: Type.Integer({
      minimum: 1,
      default: 256,
      description:
        'Only requests with max_tokens up to this are sampled (the engine keeps a vocabulary-wide row for each of the first maxTokens steps while they run).',
    }),
    expertOffload: Type.Boolean({
      default: false,
      description:
        'Also shadow expert-offload (edgemoe) and weight-elastic (sti) requests, against the model resident at fp32 (every expert; the dense graph). Off by default: that reference holds all weights in memory, which an offloading deployment may not have.',
    }),
  },
  { additionalProperties: false, default: {} },
);

const CompressionSection = Type.Object(
  {
    scorerModelDir: Type.Union([Type.String({ minLength: 1 }), Type.Null()], {
      default: null,
      description:
        'A local model directory (same tokenizer as the served model) that scores prompts for context compression; null: the served model scores them. Relative paths resolve against the working directory.',
    }),
  },
  { additionalProperties: false, default: {} },
);

export const ConfigSchema = Type.Object(
  {
    model: ModelSection,
    server: ServerSection,
    memory: MemorySection,
    engine: EngineSection,
    policies: PoliciesSection,
    routing: RoutingSection,
    shadow: ShadowSection,
    compression: CompressionSection,
  },
  { additionalProperties: false },
);

type DeepReadonly<T> = T extends readonly (infer U)[] ? readonly DeepReadonly<U>[] : T extends object ? { readonly [K in keyof T]: DeepReadonly<T[K]> } : T;

export type Config = DeepReadonly<Static<typeof ConfigSchema>>;
