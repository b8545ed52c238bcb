/**
 * Renders one answer's figures: the response's `cap` report as the server sent
 * it (policy, kind, tokens kept, compression, overflow handling, attention
 * mass retained) and the browser-measured TTFT and tokens/s. Every figure is a
 * `<span data-field=...>` so a reader (or a test) can pick it out.
 */
import type { PolicyInfo, RunResult } from './api.js';

function fmt(value: number | null | undefined, digits = 3): string {
  return value === null || value === undefined ? '–' : Number.isInteger(value) ? String(value) : value.toFixed(digits);
}

/** The overflow handling: the mode, and when it acted, the tokens before and after ("truncate 620→496"). */
function overflowText(overflow: unknown): string {
  if (overflow === null || typeof overflow !== 'object') return '–';
  const o = overflow as { mode?: unknown; applied?: unknown; tokens_before?: unknown; tokens_after?: unknown };
  const mode = typeof o.mode === 'string' ? o.mode : JSON.stringify(o.mode);
  if (o.applied !== true) return `${mode} (fits)`;
  return typeof o.tokens_after === 'number' ? `${mode} ${String(o.tokens_before)}→${o.tokens_after}` : `${mode} (applied)`;
}

function field(parent: HTMLElement, label: string, name: string, value: string): void {
  const item = document.createElement('div');
  const b = document.createElement('b');
  b.dataset['field'] = name;
  b.textContent = value;
  item.append(`${label} `, b);
  parent.append(item);
}

export function renderResult(container: HTMLElement, result: RunResult): void {
  container.replaceChildren();
  container.classList.add('cap');
  container.dataset['status'] = result.status;
  const cap = result.cap;
  field(container, 'status', 'status', result.error !== null ? `${result.status}: ${result.error}` : result.status);
  field(container, 'policy', 'policy', cap?.policy ?? '–');
  field(container, 'kind', 'kind', cap?.kind ?? '–');
  const kept = cap?.kv_tokens_retained ?? null;
  field(container, 'tokens kept', 'kv_tokens_retained', cap === null ? '–' : `${fmt(kept, 1)} / ${cap.context_tokens ?? cap.prompt_tokens}`);
  field(container, 'compression', 'compression_ratio', fmt(cap?.compression_ratio));
  field(container, 'overflow', 'overflow', overflowText(cap?.overflow));
  field(container, 'attention mass', 'attention_mass_retained', fmt(cap?.attention_mass_retained));
  field(container, 'output tokens', 'output_tokens', fmt(result.outputTokens));
  field(container, 'TTFT ms', 'ttft_ms', fmt(result.ttftMs, 0));
  field(container, 'tokens/s', 'tokens_per_second', fmt(result.tokensPerSecond, 1));
  field(container, 'total ms', 'total_ms', fmt(result.totalMs, 0));
}

/** "snapkv-25: kv-eviction (snapkv), favors C P, costs A" with coloured axes. */
export function renderPolicy(container: HTMLElement, policy: PolicyInfo | null): void {
  container.replaceChildren();
  if (policy === null) {
    container.textContent = 'The server routes: its default policy, its rules, and your favor.';
    return;
  }
  container.append(`${policy.name}: ${policy.kind} (${policy.method}), favors `);
  for (const axis of policy.cap.favors) {
    const span = document.createElement('span');
    span.className = `axis ${axis}`;
    span.textContent = axis;
    container.append(span);
  }
  container.append(` costs `);
  const cost = document.createElement('span');
  cost.className = `axis ${policy.cap.costs}`;
  cost.textContent = policy.cap.costs;
  container.append(cost);
  const params = Object.entries(policy.params);
  if (params.length > 0) container.append(` · ${params.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ')}`);
}
