/**
 * The playground's entry point (loaded by index.html as a module): reads the
 * API key field, shows /health and the model, fills the policy pickers from
 * GET /v1/policies, and starts the chat, comparison and live-metrics panels.
 */
import { apiKey, getJson, setApiKey, type PolicyInfo } from './api.js';
import { renderPolicy } from './cap-view.js';
import { setupChat } from './chat.js';
import { setupCompare } from './compare.js';
import { setupMetrics } from './metrics-panel.js';
import { byId, fillPolicies, limitFavor } from './settings.js';

async function refreshHealth(): Promise<void> {
  const pill = byId('health', HTMLElement);
  try {
    const res = await fetch('/health');
    pill.textContent = res.ok ? 'ready' : res.status === 503 ? 'loading or draining' : `health ${res.status}`;
    pill.className = `pill ${res.ok ? 'ok' : 'bad'}`;
  } catch {
    pill.textContent = 'unreachable';
    pill.className = 'pill bad';
  }
}

async function loadPolicies(): Promise<void> {
  const info = byId('policy-info', HTMLElement);
  try {
    const [policies, models] = await Promise.all([getJson<{ data: PolicyInfo[] }>('/v1/policies'), getJson<{ data: { id: string }[] }>('/v1/models')]);
    byId('model', HTMLElement).textContent = models.data[0]?.id ?? '';
    const list = policies.data;
    const picker = byId('policy', HTMLSelectElement);
    fillPolicies(picker, list, true);
    fillPolicies(byId('compare-a', HTMLSelectElement), list, false);
    fillPolicies(byId('compare-b', HTMLSelectElement), list, false);
    // The second column starts on a policy with another CAP profile (an expert-offload one serves only MoE models).
    const first = list[0];
    const other = list.findIndex((p) => p.kind !== 'expert-offload' && p.cap.costs !== first?.cap.costs);
    if (other > 0) byId('compare-b', HTMLSelectElement).selectedIndex = other;
    const show = (): void => renderPolicy(info, list.find((p) => p.name === picker.value) ?? null);
    picker.addEventListener('change', show);
    show();
    document.body.dataset['policies'] = String(list.length);
  } catch (err) {
    info.textContent = `Could not list policies: ${(err as Error).message}`;
    info.classList.add('error');
  }
}

function main(): void {
  const key = byId('api-key', HTMLInputElement);
  key.value = apiKey();
  key.addEventListener('change', () => {
    setApiKey(key.value.trim());
    void loadPolicies();
  });
  limitFavor();
  setupChat();
  setupCompare();
  setupMetrics();
  void refreshHealth();
  setInterval(() => void refreshHealth(), 5000);
  void loadPolicies();
}

main();
