/**
 * Side by side: one prompt under two policies, run one after the other (so
 * neither's latency includes the other's work), each column streaming its
 * output and ending with its cap report and latency. Sampling settings come
 * from the chat panel; a fixed seed makes the comparison about the policy.
 */
import { ResponseStream } from './api.js';
import { renderResult } from './cap-view.js';
import { byId, readSettings } from './settings.js';

async function runColumn(column: HTMLElement, policy: string, prompt: string): Promise<void> {
  column.replaceChildren();
  const title = document.createElement('h3');
  title.textContent = policy;
  const text = document.createElement('div');
  text.className = 'msg assistant text';
  const report = document.createElement('div');
  column.append(title, text, report);
  column.dataset['state'] = 'streaming';
  const stream = new ResponseStream([{ role: 'user', content: prompt }], readSettings(policy), (delta) => {
    text.textContent += delta;
  });
  const result = await stream.done;
  text.textContent = result.text;
  renderResult(report, result);
  column.dataset['state'] = result.status;
}

export function setupCompare(): void {
  const form = byId('compare-form', HTMLFormElement);
  const run = byId('compare-run', HTMLButtonElement);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const prompt = byId('compare-prompt', HTMLTextAreaElement).value.trim();
    if (prompt === '') return;
    const a = byId('compare-a', HTMLSelectElement).value;
    const b = byId('compare-b', HTMLSelectElement).value;
    const left = byId('compare-left', HTMLDivElement);
    const right = byId('compare-right', HTMLDivElement);
    right.replaceChildren();
    run.disabled = true;
    void runColumn(left, a, prompt)
      .then(() => runColumn(right, b, prompt))
      .finally(() => {
        run.disabled = false;
      });
  });
}
