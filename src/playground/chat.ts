/**
 * The chat panel: the conversation is kept in the page and sent whole with each
 * response.create (the websocket takes messages, not previous_response_id);
 * tokens are appended as they stream; Cancel sends response.cancel and keeps
 * what was generated (status cancelled). Each answer shows its cap report.
 */
import { ResponseStream, type ChatTurn } from './api.js';
import { renderResult } from './cap-view.js';
import { byId, readSettings } from './settings.js';

export function setupChat(): void {
  const messages = byId('messages', HTMLDivElement);
  const form = byId('chat-form', HTMLFormElement);
  const prompt = byId('prompt', HTMLTextAreaElement);
  const send = byId('send', HTMLButtonElement);
  const cancel = byId('cancel', HTMLButtonElement);
  const history: ChatTurn[] = [];
  let running: ResponseStream | null = null;

  const bubble = (role: 'user' | 'assistant', text: string): { root: HTMLDivElement; text: HTMLDivElement } => {
    const root = document.createElement('div');
    root.className = `msg ${role}`;
    const body = document.createElement('div');
    body.className = 'text';
    body.textContent = text;
    root.append(body);
    messages.append(root);
    messages.scrollTop = messages.scrollHeight;
    return { root, text: body };
  };

  const submit = async (): Promise<void> => {
    const content = prompt.value.trim();
    if (content === '' || running !== null) return;
    prompt.value = '';
    history.push({ role: 'user', content });
    bubble('user', content);
    const answer = bubble('assistant', '');
    answer.root.dataset['state'] = 'streaming';
    let deltas = 0;
    const stream = new ResponseStream(history, readSettings(), (delta) => {
      deltas += 1;
      answer.text.textContent += delta;
      answer.root.dataset['deltas'] = String(deltas);
      messages.scrollTop = messages.scrollHeight;
    });
    running = stream;
    send.disabled = true;
    cancel.disabled = false;
    const result = await stream.done;
    running = null;
    send.disabled = false;
    cancel.disabled = true;
    answer.text.textContent = result.text;
    answer.root.dataset['state'] = result.status;
    const report = document.createElement('div');
    answer.root.append(report);
    renderResult(report, result);
    // A failed turn is not part of the conversation; a cancelled one keeps what was said.
    if (result.status === 'error') history.pop();
    else history.push({ role: 'assistant', content: result.text });
  };

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    void submit();
  });
  prompt.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      void submit();
    }
  });
  cancel.addEventListener('click', () => running?.cancel());
  byId('clear', HTMLButtonElement).addEventListener('click', () => {
    if (running !== null) return;
    history.length = 0;
    messages.replaceChildren();
  });
}
