import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { FavorSchema } from '../config/schema.js';
import { OverflowSchema } from '../policies/overflow/schema.js';

/**
 * Request bodies as JSON Schema. Every object is closed: an unknown parameter
 * is a 400 naming it, never a silent ignore. Optional parameters also accept
 * null, as OpenAI's API does.
 */
const opt = <T extends TSchema>(schema: T) => Type.Optional(Type.Union([schema, Type.Null()]));

const TextPart = Type.Object({ type: Type.Literal('text'), text: Type.String() }, { additionalProperties: false });

const ToolCallSchema = Type.Object(
  {
    id: Type.String(),
    type: Type.Literal('function'),
    function: Type.Object({ name: Type.String(), arguments: Type.String() }, { additionalProperties: false }),
  },
  { additionalProperties: false },
);

export const ChatMessageSchema = Type.Object(
  {
    role: Type.Union([Type.Literal('system'), Type.Literal('developer'), Type.Literal('user'), Type.Literal('assistant'), Type.Literal('tool')]),
    // null: an assistant turn that only called tools.
    content: Type.Union([Type.String(), Type.Array(TextPart), Type.Null()]),
    tool_calls: opt(Type.Array(ToolCallSchema)),
    tool_call_id: opt(Type.String()),
    name: opt(Type.String()),
    refusal: Type.Optional(Type.Null()),
  },
  { additionalProperties: false },
);
export type WireChatMessage = Static<typeof ChatMessageSchema>;

const ToolSchema = Type.Object(
  {
    type: Type.Literal('function'),
    function: Type.Object(
      {
        name: Type.String(),
        description: opt(Type.String()),
        parameters: opt(Type.Record(Type.String(), Type.Unknown())),
        strict: opt(Type.Boolean()),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const ToolChoiceSchema = Type.Union([
  Type.Literal('none'),
  Type.Literal('auto'),
  Type.Literal('required'),
  Type.Object(
    { type: Type.Literal('function'), function: Type.Object({ name: Type.String() }, { additionalProperties: false }) },
    { additionalProperties: false },
  ),
]);

const StopSchema = Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { maxItems: 4 })]);
/** Token id (as a JSON key) -> bias in [-100, 100]. */
const LogitBiasSchema = Type.Object({}, { propertyNames: { pattern: '^\\d+$' }, additionalProperties: Type.Number({ minimum: -100, maximum: 100 }) });
/**
 * capserve's own request field: `policy` names a serving policy, `favor` states
 * which (at most two) of C, A, P matter most, `overflow` overrides what happens
 * when prompt + max_tokens exceed the window, and `return_dropped` asks for what
 * compression or truncation dropped (debugging). Closed like the rest.
 */
export const CapSchema = Type.Object(
  {
    policy: opt(Type.String({ minLength: 1 })),
    favor: opt(FavorSchema),
    overflow: opt(OverflowSchema),
    return_dropped: opt(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type RequestCapBody = Static<typeof CapSchema>;
/** response_format: text, any JSON object, or a JSON Schema (compiled and checked by structured-output.ts). */
export const JsonSchemaFormat = Type.Object(
  {
    name: Type.String(),
    description: opt(Type.String()),
    schema: opt(Type.Record(Type.String(), Type.Unknown())),
    strict: opt(Type.Boolean()),
  },
  { additionalProperties: false },
);
const ResponseFormatSchema = Type.Union([
  Type.Object({ type: Type.Literal('text') }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal('json_object') }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal('json_schema'), json_schema: JsonSchemaFormat }, { additionalProperties: false }),
]);
/** vLLM's structured_outputs object; only the text-pattern members (JSON goes through response_format). */
const StructuredOutputsSchema = Type.Object(
  { regex: opt(Type.String()), grammar: opt(Type.String()), choice: opt(Type.Array(Type.String(), { minItems: 1 })) },
  { additionalProperties: false },
);
const StreamOptionsSchema = Type.Object({ include_usage: opt(Type.Boolean()) }, { additionalProperties: false });

/** Sampling fields shared by chat and completions, OpenAI's plus vLLM's extras. */
const samplingFields = {
  model: opt(Type.String({ minLength: 1 })),
  max_tokens: opt(Type.Integer({ minimum: 1 })),
  temperature: opt(Type.Number({ minimum: 0, maximum: 2 })),
  top_p: opt(Type.Number({ exclusiveMinimum: 0, maximum: 1 })),
  top_k: opt(Type.Integer({ minimum: -1 })),
  min_p: opt(Type.Number({ minimum: 0, maximum: 1 })),
  presence_penalty: opt(Type.Number({ minimum: -2, maximum: 2 })),
  frequency_penalty: opt(Type.Number({ minimum: -2, maximum: 2 })),
  repetition_penalty: opt(Type.Number({ exclusiveMinimum: 0, maximum: 2 })),
  logit_bias: opt(LogitBiasSchema),
  seed: opt(Type.Integer({ minimum: -9007199254740991, maximum: 9007199254740991 })),
  stop: opt(StopSchema),
  stop_token_ids: opt(Type.Array(Type.Integer({ minimum: 0 }))),
  ignore_eos: opt(Type.Boolean()),
  user: opt(Type.String()),
  cap: opt(CapSchema),
  // capserve extensions under vLLM's names (guided-output.ts): a regex, a GBNF grammar, or a choice list.
  structured_outputs: opt(StructuredOutputsSchema),
  guided_regex: opt(Type.String()),
  guided_grammar: opt(Type.String()),
  guided_choice: opt(Type.Array(Type.String(), { minItems: 1 })),
};

/** How many choices, and streaming: HTTP endpoints only (a websocket always streams one response). */
const deliveryFields = {
  n: opt(Type.Integer({ minimum: 1, maximum: 16 })),
  stream: opt(Type.Boolean()),
  stream_options: opt(StreamOptionsSchema),
};

export const ChatCompletionRequestSchema = Type.Object(
  {
    ...samplingFields,
    ...deliveryFields,
    messages: Type.Array(ChatMessageSchema, { minItems: 1 }),
    max_completion_tokens: opt(Type.Integer({ minimum: 1 })),
    logprobs: opt(Type.Boolean()),
    top_logprobs: opt(Type.Integer({ minimum: 0, maximum: 20 })),
    response_format: opt(ResponseFormatSchema),
    tools: opt(Type.Array(ToolSchema)),
    tool_choice: opt(ToolChoiceSchema),
    parallel_tool_calls: opt(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type ChatCompletionRequest = Static<typeof ChatCompletionRequestSchema>;

const TokenIds = Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1 });
export const CompletionRequestSchema = Type.Object(
  {
    ...samplingFields,
    ...deliveryFields,
    // A list is a batch: one set of n choices per prompt (index = prompt_i * n + j).
    prompt: Type.Union([Type.String(), TokenIds, Type.Array(Type.String(), { minItems: 1 }), Type.Array(TokenIds, { minItems: 1 })]),
    // 0 only with echo (scoring the prompt, nothing generated): checked by the route.
    max_tokens: opt(Type.Integer({ minimum: 0 })),
    logprobs: opt(Type.Integer({ minimum: 0, maximum: 20 })),
    echo: opt(Type.Boolean()),
    // best_of and suffix are pre-checked (unsupported-params.ts) so the 400 names them clearly.
    best_of: opt(Type.Integer({ minimum: 1 })),
    suffix: opt(Type.String()),
    response_format: opt(ResponseFormatSchema),
  },
  { additionalProperties: false },
);
export type CompletionRequest = Static<typeof CompletionRequestSchema>;

/** vLLM's /tokenize takes either a prompt or chat messages; the route picks the schema by which key is present. */
export const TokenizePromptRequestSchema = Type.Object(
  { model: opt(Type.String({ minLength: 1 })), prompt: Type.String(), add_special_tokens: opt(Type.Boolean()) },
  { additionalProperties: false },
);
export type TokenizePromptRequest = Static<typeof TokenizePromptRequestSchema>;

export const TokenizeChatRequestSchema = Type.Object(
  {
    model: opt(Type.String({ minLength: 1 })),
    messages: Type.Array(ChatMessageSchema, { minItems: 1 }),
    add_generation_prompt: opt(Type.Boolean()),
    continue_final_message: opt(Type.Boolean()),
    add_special_tokens: opt(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type TokenizeChatRequest = Static<typeof TokenizeChatRequestSchema>;

export const DetokenizeRequestSchema = Type.Object(
  { model: opt(Type.String({ minLength: 1 })), tokens: Type.Array(Type.Integer({ minimum: 0 })) },
  { additionalProperties: false },
);
export type DetokenizeRequest = Static<typeof DetokenizeRequestSchema>;

const ResponseInputPart = Type.Object(
  { type: Type.Union([Type.Literal('input_text'), Type.Literal('output_text')]), text: Type.String(), annotations: Type.Optional(Type.Array(Type.Unknown())) },
  { additionalProperties: false },
);
const ResponseInputMessage = Type.Object(
  {
    type: Type.Optional(Type.Literal('message')),
    id: Type.Optional(Type.String()),
    status: Type.Optional(Type.String()),
    role: Type.Union([Type.Literal('system'), Type.Literal('developer'), Type.Literal('user'), Type.Literal('assistant')]),
    content: Type.Union([Type.String(), Type.Array(ResponseInputPart)]),
  },
  { additionalProperties: false },
);

/** The Responses API's `text` (HTTP body, and the websocket's response.create): the output format. */
export const ResponsesTextSchema = Type.Object(
  {
    format: opt(
      Type.Union([
        Type.Object({ type: Type.Literal('text') }, { additionalProperties: false }),
        Type.Object({ type: Type.Literal('json_object') }, { additionalProperties: false }),
        Type.Object(
          {
            type: Type.Literal('json_schema'),
            name: Type.String(),
            description: opt(Type.String()),
            schema: opt(Type.Record(Type.String(), Type.Unknown())),
            strict: opt(Type.Boolean()),
          },
          { additionalProperties: false },
        ),
      ]),
    ),
    verbosity: opt(Type.String()),
  },
  { additionalProperties: false },
);
export type ResponsesText = Static<typeof ResponsesTextSchema>;

/** HTTP POST /v1/responses: OpenAI's Responses request (text in, text out) plus `cap`. */
export const ResponsesRequestSchema = Type.Object(
  {
    model: samplingFields.model,
    input: Type.Union([Type.String(), Type.Array(ResponseInputMessage, { minItems: 1 })]),
    instructions: opt(Type.String()),
    max_output_tokens: opt(Type.Integer({ minimum: 1 })),
    temperature: samplingFields.temperature,
    top_p: samplingFields.top_p,
    stream: opt(Type.Boolean()),
    previous_response_id: opt(Type.String({ minLength: 1 })),
    text: opt(ResponsesTextSchema),
    user: samplingFields.user,
    cap: samplingFields.cap,
  },
  { additionalProperties: false },
);
export type ResponsesRequest = Static<typeof ResponsesRequestSchema>;

/** The websocket `response.create` event: a chat request's fields at the top level. */
export const ResponseCreateEventSchema = Type.Object(
  {
    type: Type.Literal('response.create'),
    ...samplingFields,
    messages: Type.Array(ChatMessageSchema, { minItems: 1 }),
    max_completion_tokens: opt(Type.Integer({ minimum: 1 })),
    max_output_tokens: opt(Type.Integer({ minimum: 1 })),
    // Structured outputs as on HTTP: chat's response_format or the Responses API's text.format (one of them).
    response_format: opt(ResponseFormatSchema),
    text: opt(ResponsesTextSchema),
  },
  { additionalProperties: false },
);
export type ResponseCreateEvent = Static<typeof ResponseCreateEventSchema>;
