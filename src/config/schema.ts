import { Type, type Static } from '@sinclair/typebox';

/**
 * The config file's shape. Every object is closed (additionalProperties: false)
 * so a misspelled key is an error, never silently dropped. Defaults live here so
 * the file, the flags and the docs agree on one source.
 */
const ModelSection = Type.Object(
  {
    dir: Type.String({ minLength: 1, default: '.cache/models/default', description: 'Hugging Face model directory (relative paths resolve against the working directory).' }),
    servedModelName: Type.Union([Type.String({ minLength: 1 }), Type.Null()], { default: null, description: 'Model id on the API; null: the directory name.' }),
    weightDtype: Type.Union([Type.Literal('fp32'), Type.Literal('int8'), Type.Literal('int4')], { default: 'fp32' }),
    chatTemplateFallback: Type.Union([Type.String({ minLength: 1 }), Type.Null()], {
      default: null,
      description: "Chat template used when the model ships none: 'chatml' or an inline Jinja template. null: chat completions answer 400.",
    }),
    contextLength: Type.Optional(Type.Integer({ minimum: 1, description: "Caps the model's context length." })),
  },
  { additionalProperties: false, default: {} },
);

const ServerSection = Type.Object(
  {
    host: Type.String({ minLength: 1, default: '127.0.0.1' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 8000 }),
    apiKeys: Type.Array(Type.String({ minLength: 1 }), { default: [], description: 'Bearer keys; empty: no auth.' }),
    maxConcurrent: Type.Integer({ minimum: 1, default: 8, description: 'Sequences decoded together.' }),
    maxQueue: Type.Integer({ minimum: 0, default: 64, description: 'Requests waiting beyond maxConcurrent before 429.' }),
    bodyLimitBytes: Type.Integer({ minimum: 1024, default: 4 * 1024 * 1024 }),
    shutdownGraceMs: Type.Integer({ minimum: 0, default: 30_000 }),
    requestTimeoutMs: Type.Optional(Type.Integer({ minimum: 1, description: 'Generation deadline per request; absent: none.' })),
  },
  { additionalProperties: false, default: {} },
);

const MemorySection = Type.Object(
  {
    kvBudgetBytes: Type.Integer({ minimum: 1, default: 256 * 1024 * 1024 }),
  },
  { additionalProperties: false, default: {} },
);

const EngineSection = Type.Object(
  {
    threads: Type.Integer({ minimum: 0, default: 0, description: 'Intra-op threads for inference; 0: runtime default.' }),
  },
  { additionalProperties: false, default: {} },
);

const RoutingSection = Type.Object(
  {
    defaultPolicy: Type.Literal('full', { default: 'full' }),
  },
  { additionalProperties: false, default: {} },
);

export const ConfigSchema = Type.Object(
  {
    model: ModelSection,
    server: ServerSection,
    memory: MemorySection,
    engine: EngineSection,
    routing: RoutingSection,
  },
  { additionalProperties: false },
);

type DeepReadonly<T> = T extends readonly (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

export type Config = DeepReadonly<Static<typeof ConfigSchema>>;
