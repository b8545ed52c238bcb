import t from 'tap';
import assert from 'node:assert/strict';
import { Template } from '@huggingface/jinja';
import { GrammarAutomaton, DEAD } from '../../../src/engine/grammar/automaton.js';
import { TokenTrie } from '../../../src/engine/grammar/token-trie.js';
import type { ModelCard } from '../../../src/engine/types.js';
import { detectToolFormat } from '../../../src/model/chat-template.js';
import {
  autoToolsConstraint,
  formatCall,
  historyMessages,
  parseToolCalls,
  ToolCallStream,
  toolsConstraint,
  toolsSetup,
  type WireTool,
} from '../../../src/server/tools.js';
import { GrammarMatcher } from '../../../src/engine/grammar/matcher.js';
import { Xoshiro128 } from '../../../src/engine/sampling/rng.js';
import { responseFormatConstraint } from '../../../src/server/structured-output.js';

const card = (toolCallFormat: ModelCard['toolCallFormat']): ModelCard => ({
  id: 'm',
  contextLength: 512,
  hasChatTemplate: true,
  vocabSize: 256,
  createdAt: 0,
  toolCallFormat,
});
const TOOLS: WireTool[] = [
  {
    type: 'function',
    function: {
      name: 'add',
      parameters: { type: 'object', properties: { a: { type: 'integer' }, b: { type: 'integer' } }, required: ['a', 'b'], additionalProperties: false },
    },
  },
  { type: 'function', function: { name: 'now' } },
];
const trie = new TokenTrie(
  Array.from({ length: 256 }, (_, b) => Uint8Array.of(b)),
  256,
);

function accepts(a: GrammarAutomaton, text: string): boolean {
  let s = a.initial;
  for (const b of Buffer.from(text)) {
    s = a.step(s, b);
    if (s === DEAD) return false;
  }
  return a.accepting(s);
}

t.test('parseToolCalls: Hermes blocks anywhere, content around them, unparseable blocks stay text', async () => {
  const r = parseToolCalls(
    'Sure.\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>\n<tool_call>{"name":"now","arguments":{}}</tool_call>',
    'hermes',
  );
  assert.equal(r.content, 'Sure.');
  assert.deepEqual(
    r.calls.map((c) => [c.name, c.arguments]),
    [
      ['add', '{"a":1,"b":2}'],
      ['now', '{}'],
    ],
  );
  assert.notEqual(r.calls[0]?.id, r.calls[1]?.id);
  assert.deepEqual(parseToolCalls('<tool_call>{oops}</tool_call>', 'hermes'), { content: '<tool_call>{oops}</tool_call>', calls: [] });
  assert.deepEqual(parseToolCalls('plain text', 'hermes'), { content: 'plain text', calls: [] });
  // An argument may contain the closing tag: the call ends at the first tag outside a JSON string.
  const inside = parseToolCalls('<tool_call>\n{"name": "echo", "arguments": {"s": "a </tool_call> b"}}\n</tool_call>', 'hermes');
  assert.deepEqual(
    inside.calls.map((c) => c.arguments),
    ['{"s":"a </tool_call> b"}'],
  );
  // Cut off by max_tokens after a complete JSON object: still a call.
  assert.equal(parseToolCalls('<tool_call>\n{"name": "now", "arguments": {}}', 'hermes').calls.length, 1);
});

t.test('parseToolCalls: Llama 3 JSON and Mistral [TOOL_CALLS]', async () => {
  const l = parseToolCalls('<|python_tag|>{"name": "add", "parameters": {"a": 1, "b": 2}}', 'llama3');
  assert.deepEqual(
    l.calls.map((c) => [c.name, c.arguments]),
    [['add', '{"a":1,"b":2}']],
  );
  assert.equal(l.content, null);
  assert.equal(parseToolCalls('{"name": "add", "parameters": {"a": 1, "b": 2}}; {"name": "now", "parameters": {}}', 'llama3').calls.length, 2);
  assert.equal(parseToolCalls('The answer is {"x": 1}', 'llama3').calls.length, 0);
  const m = parseToolCalls('[TOOL_CALLS] [{"name": "add", "arguments": {"a": 1, "b": 2}}, {"name": "now", "arguments": {}}]', 'mistral');
  assert.deepEqual(
    m.calls.map((c) => c.name),
    ['add', 'now'],
  );
});

t.test('ToolCallStream: content streams, a partial tag is held, calls come out whole', async () => {
  const s = new ToolCallStream('hermes');
  const pieces = ['Hi ', 'there <tool', '_call>\n{"name": "now", ', '"arguments": {}}\n</tool_', 'call> bye'];
  let content = '';
  const names: string[] = [];
  for (const p of pieces) {
    const r = s.push(p);
    content += r.content;
    names.push(...r.calls.map((c) => c.name));
  }
  const end = s.flush();
  content += end.content;
  assert.equal(content, 'Hi there  bye');
  assert.deepEqual(names, ['now']);
  const l = new ToolCallStream('llama3');
  assert.deepEqual(l.push('{"name": "now", '), { content: '', calls: [] });
  assert.deepEqual(l.push('"parameters": {}}'), { content: '', calls: [] });
  assert.deepEqual(
    l.flush().calls.map((c) => c.name),
    ['now'],
  );
  const plain = new ToolCallStream('llama3');
  assert.equal(plain.push('Once upon').content, 'Once upon');
});

t.test('forced calls: the grammar accepts exactly well-formed calls to the allowed functions', async () => {
  const required = toolsSetup({ tools: TOOLS, tool_choice: 'required', parallel_tool_calls: false }, card(null));
  assert.ok(required);
  assert.equal(required.native, false);
  const a = new GrammarAutomaton(toolsConstraint(required)?.grammar ?? { rules: [] }, trie);
  assert.ok(accepts(a, '<tool_call>\n{"name": "add", "arguments": {"a":1,"b":-2}}\n</tool_call>'));
  assert.ok(accepts(a, '<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call>'));
  assert.ok(!accepts(a, '<tool_call>\n{"name": "add", "arguments": {"a":1}}\n</tool_call>'));
  assert.ok(!accepts(a, '<tool_call>\n{"name": "sub", "arguments": {}}\n</tool_call>'));
  assert.ok(!accepts(a, '<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call>'));
  const named = toolsSetup({ tools: TOOLS, tool_choice: { type: 'function', function: { name: 'now' } } }, card('hermes'));
  assert.ok(named?.native);
  const n = new GrammarAutomaton(toolsConstraint(named as NonNullable<typeof named>)?.grammar ?? { rules: [] }, trie);
  assert.ok(!accepts(n, '<tool_call>\n{"name": "add", "arguments": {"a":1,"b":2}}\n</tool_call>'));
  assert.ok(
    accepts(n, '<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call>'),
    'parallel by default',
  );
  const llama = toolsSetup({ tools: TOOLS, tool_choice: 'required' }, card('llama3'));
  const la = new GrammarAutomaton(toolsConstraint(llama as NonNullable<typeof llama>)?.grammar ?? { rules: [] }, trie);
  assert.ok(accepts(la, '{"name": "now", "parameters": {}}'));
  const mistral = toolsSetup({ tools: TOOLS, tool_choice: 'required' }, card('mistral'));
  const ma = new GrammarAutomaton(toolsConstraint(mistral as NonNullable<typeof mistral>)?.grammar ?? { rules: [] }, trie);
  assert.ok(accepts(ma, '[{"name": "now", "arguments": {}}, {"name": "add", "arguments": {"a":1,"b":2}}]'));
  assert.equal(toolsSetup({ tools: TOOLS, tool_choice: 'none' }, card(null)), null);
  assert.equal(toolsConstraint(toolsSetup({ tools: TOOLS }, card(null)) as NonNullable<ReturnType<typeof toolsSetup>>), null, 'auto is not forced');
});

t.test('auto: free text, or a call that is valid once opened (Hermes: the <tool_call> opener anywhere)', async () => {
  const setup = toolsSetup({ tools: TOOLS, tool_choice: 'auto', parallel_tool_calls: false }, card(null));
  assert.ok(setup);
  const c = autoToolsConstraint(setup, null);
  assert.equal(c?.type, 'tools_auto');
  const a = new GrammarAutomaton(c?.grammar ?? { rules: [] }, trie);
  for (const s of [
    '',
    'Hello there.',
    'a < b and <tool_ is fine',
    'x<tool_callx',
    '<<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call>',
    'Sure.\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>',
  ]) {
    assert.ok(accepts(a, s), s);
  }
  for (const s of [
    '<tool_call>oops',
    'Hi <tool_call>\n{"name": "sub", "arguments": {}}\n</tool_call>',
    '<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>',
    '<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call> more',
    '<tool_call>\n{"name": "now"',
  ]) {
    assert.ok(!accepts(a, s), s);
  }
  const parallel = toolsSetup({ tools: TOOLS, tool_choice: 'auto' }, card(null));
  const p = new GrammarAutomaton(autoToolsConstraint(parallel as NonNullable<typeof parallel>, null)?.grammar ?? { rules: [] }, trie);
  assert.ok(accepts(p, 'A <tool_call>\n{"name": "now", "arguments": {}}\n</tool_call> then <tool_call>\n{"name": "now", "arguments": {}}\n</tool_call>.'));
  assert.equal(
    autoToolsConstraint(toolsSetup({ tools: TOOLS, tool_choice: 'required' }, card(null)) as NonNullable<ReturnType<typeof toolsSetup>>, null),
    null,
    "forced choices are toolsConstraint's",
  );
});

t.test('auto: Llama 3 and Mistral (the call is the whole output): calls, or text that does not open with { or [', async () => {
  const llama = toolsSetup({ tools: TOOLS, tool_choice: 'auto' }, card('llama3'));
  const la = new GrammarAutomaton(autoToolsConstraint(llama as NonNullable<typeof llama>, null)?.grammar ?? { rules: [] }, trie);
  for (const s of [
    'Hello {x}',
    '  ok',
    '',
    '{"name": "now", "parameters": {}}',
    '{"name": "now", "parameters": {}}; {"name": "add", "parameters": {"a": 1, "b": 2}}',
  ])
    assert.ok(accepts(la, s), s);
  for (const s of ['{"x": 1}', ' {"name": "now"', '[1]']) assert.ok(!accepts(la, s), s);
  const mistral = toolsSetup({ tools: TOOLS, tool_choice: 'auto' }, card('mistral'));
  const ma = new GrammarAutomaton(autoToolsConstraint(mistral as NonNullable<typeof mistral>, null)?.grammar ?? { rules: [] }, trie);
  assert.ok(accepts(ma, '[{"name": "now", "arguments": {}}]'));
  assert.ok(accepts(ma, 'No call needed.'));
  assert.ok(!accepts(ma, '[{"name": "add", "arguments": {}}]'));
});

t.test('auto with a text constraint: the output is a call or a document of that constraint', async () => {
  const setup = toolsSetup({ tools: TOOLS, tool_choice: 'auto' }, card(null)) as NonNullable<ReturnType<typeof toolsSetup>>;
  const text = responseFormatConstraint({
    type: 'json_schema',
    json_schema: { name: 'n', schema: { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'], additionalProperties: false } },
  });
  const c = autoToolsConstraint(setup, text);
  assert.equal(c?.name, 'n');
  const a = new GrammarAutomaton(c?.grammar ?? { rules: [] }, trie);
  assert.ok(accepts(a, '{"n": 3}'));
  assert.ok(accepts(a, '<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call>'));
  assert.ok(!accepts(a, 'Hello'));
});

t.test('auto: a model that opens a call and then writes invalid arguments still produces a valid call (greedy over masked logits)', async () => {
  // The "model" prefers, at each step, the byte that continues its script: a call with a wrong argument type and an unknown key.
  const script = Buffer.from('Let me check. <tool_call>\n{"name": "add", "arguments": {"a": "one", "c": 2}}\n</tool_call>');
  const setup = toolsSetup({ tools: TOOLS, tool_choice: 'auto', parallel_tool_calls: false }, card(null)) as NonNullable<ReturnType<typeof toolsSetup>>;
  const eos = 256;
  const bytes = [...Array.from({ length: 256 }, (_, b) => Uint8Array.of(b)), null];
  const a = new GrammarAutomaton(autoToolsConstraint(setup, null)?.grammar ?? { rules: [] }, new TokenTrie(bytes, 257));
  const m = new GrammarMatcher(a, new Set([eos]));
  const out: number[] = [];
  for (let step = 0; step < 200 && !m.finished; step++) {
    const logits = new Float32Array(257).map((_, id) =>
      id === script[step] ? 10 : id === eos ? (step >= script.length ? 9 : -5) : id === 0x30 + (step % 10) ? 1 : 0,
    );
    m.apply(logits, 200 - step);
    let best = 0;
    for (let id = 1; id < logits.length; id++) if ((logits[id] ?? -Infinity) > (logits[best] ?? -Infinity)) best = id;
    if (best === eos) break;
    m.accept(best);
    out.push(best);
  }
  const text = Buffer.from(out).toString('utf8');
  assert.ok(text.startsWith('Let me check. <tool_call>\n{"name": "add", "arguments": {"a": '), text);
  const parsed = parseToolCalls(text, 'hermes');
  assert.equal(parsed.calls.length, 1, text);
  const args = JSON.parse(parsed.calls[0]?.arguments ?? '') as Record<string, unknown>;
  assert.deepEqual(Object.keys(args), ['a', 'b'], text);
  assert.ok(Number.isInteger(args['a']) && Number.isInteger(args['b']), text);
  assert.equal(parsed.content, 'Let me check.');
});

t.test('auto: sampled at random over a vocabulary with a <tool_call> piece, every opened call parses and validates', async () => {
  const pieces = ['<tool_call>', '\n', '{"name": "', 'add', 'now', '", "arguments": ', '{"a": ', ', "b": ', '}', '</tool_call>', 'Hi', ' there', '<', 'tool'];
  const bytes = [...Array.from({ length: 256 }, (_, b) => Uint8Array.of(b)), ...pieces.map((p) => Uint8Array.from(Buffer.from(p))), null];
  const eos = bytes.length - 1;
  const vocabTrie = new TokenTrie(bytes, bytes.length);
  const setup = toolsSetup({ tools: TOOLS, tool_choice: 'auto' }, card(null)) as NonNullable<ReturnType<typeof toolsSetup>>;
  const a = new GrammarAutomaton(autoToolsConstraint(setup, null)?.grammar ?? { rules: [] }, vocabTrie);
  const rng = Xoshiro128.fromSeed(21);
  let called = 0;
  for (let i = 0; i < 60; i++) {
    const m = new GrammarMatcher(a, new Set([eos]));
    const out: number[] = [];
    const max = 80;
    for (let step = 0; step < max && !m.finished; step++) {
      const work = new Float32Array(bytes.length);
      m.apply(work, max - step);
      const ids = [...work.keys()].filter((id) => work[id] !== -Infinity);
      // Favour the pieces (a model writes words, not bytes), so calls do get opened.
      const words = ids.filter((id) => id >= 256);
      const pool = words.length > 0 && rng.nextFloat() < 0.8 ? words : ids;
      const id = pool[Math.floor(rng.nextFloat() * pool.length)] ?? eos;
      if (id === eos) break;
      m.accept(id);
      out.push(...(bytes[id] ?? []));
    }
    const text = Buffer.from(out).toString('utf8');
    const parsed = parseToolCalls(text, 'hermes');
    // Every opener the model wrote became a call (an opener inside a call's string argument is that argument's text).
    if (m.accepting) assert.ok(!(parsed.content ?? '').includes('<tool_call>'), `every opened call parsed: ${JSON.stringify(text)}`);
    for (const call of parsed.calls) {
      const args = JSON.parse(call.arguments) as Record<string, unknown>;
      if (call.name === 'add') assert.ok(Number.isInteger(args['a']) && Number.isInteger(args['b']), call.arguments);
      else assert.equal(call.name, 'now');
    }
    called += parsed.calls.length;
  }
  assert.ok(called > 0, 'some samples call a tool');
});

t.test('history: without template support, tools become a system message and calls / results Hermes text', async () => {
  const setup = toolsSetup({ tools: TOOLS, tool_choice: 'auto' }, card(null));
  const msgs = historyMessages(
    [
      { role: 'system', content: 'Be brief.', toolCalls: null, toolCallId: null, index: 0 },
      { role: 'user', content: 'add 1 2', toolCalls: null, toolCallId: null, index: 1 },
      {
        role: 'assistant',
        content: '',
        toolCalls: [{ id: 'c1', type: 'function', function: { name: 'add', arguments: '{"a":1,"b":2}' } }],
        toolCallId: null,
        index: 2,
      },
      { role: 'tool', content: '3', toolCalls: null, toolCallId: 'c1', index: 3 },
    ],
    setup,
  );
  assert.equal(msgs[0]?.role, 'system');
  assert.match(msgs[0]?.content ?? '', /^Be brief\.\n\nFunctions you can call:\n\{"name":"add"/);
  assert.equal(msgs[2]?.content, formatCall('hermes', 'add', { a: 1, b: 2 }));
  assert.deepEqual(msgs[3], { role: 'user', content: '<tool_response>\n3\n</tool_response>' });
});

t.test('history: a template with tool support gets tools, tool_calls (arguments as objects) and tool turns as transformers passes them', async () => {
  // A Qwen 2.5-style template, cut down.
  const source =
    "{%- if tools %}{{- '<tools>' }}{%- for tool in tools %}{{- tool.function.name }}{%- endfor %}{{- '</tools>\\n' }}{%- endif %}" +
    "{%- for message in messages %}{%- if message.role == 'assistant' and message.tool_calls %}{%- for tc in message.tool_calls %}{{- '<tool_call>' + tc.function.name + ':' + (tc.function.arguments | tojson) + '</tool_call>\\n' }}{%- endfor %}" +
    "{%- elif message.role == 'tool' %}{{- '<tool_response>' + message.content + '</tool_response>\\n' }}{%- else %}{{- message.role + ': ' + message.content + '\\n' }}{%- endif %}{%- endfor %}";
  assert.equal(detectToolFormat(source), 'hermes');
  assert.equal(detectToolFormat('{{ messages[0].content }}'), null);
  assert.equal(detectToolFormat('{% if tools %}[AVAILABLE_TOOLS]{% endif %}[TOOL_CALLS]'), 'mistral');
  assert.equal(detectToolFormat('{% if tools %}<|python_tag|>{% endif %}'), 'llama3');
  const setup = toolsSetup({ tools: TOOLS }, card('hermes'));
  assert.ok(setup?.native);
  const msgs = historyMessages(
    [
      { role: 'user', content: 'add', toolCalls: null, toolCallId: null, index: 0 },
      {
        role: 'assistant',
        content: '',
        toolCalls: [{ id: 'c1', type: 'function', function: { name: 'add', arguments: '{"a":1,"b":2}' } }],
        toolCallId: null,
        index: 1,
      },
      { role: 'tool', content: '3', toolCalls: null, toolCallId: 'c1', index: 2 },
    ],
    setup,
  );
  const text = new Template(source).render({ messages: msgs, tools: TOOLS });
  assert.equal(text, '<tools>addnow</tools>\nuser: add\n<tool_call>add:{"a": 1, "b": 2}</tool_call>\n<tool_response>3</tool_response>\n');
});
