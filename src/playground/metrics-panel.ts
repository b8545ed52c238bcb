/**
 * The live panel: scrapes /metrics every two seconds, shows running and
 * waiting requests, KV bytes and the token rate with a sparkline each, and a
 * per-policy table (requests, mean latency, mean TTFT, shadow fidelity).
 * Scraping stops while the tab is hidden.
 */
import { getText } from './api.js';
import { Sparkline } from './charts.js';
import { parseMetrics, snapshot, tokenRate, type Snapshot } from './metrics-text.js';
import { byId } from './settings.js';

function bytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

function seconds(s: number | null): string {
  return s === null ? '–' : s < 1 ? `${(s * 1000).toFixed(0)} ms` : `${s.toFixed(2)} s`;
}

function number(x: number | null, digits: number): string {
  return x === null ? '–' : x.toFixed(digits);
}

export function setupMetrics(intervalMs = 2000): void {
  const charts = {
    running: new Sparkline(byId('c-running', HTMLElement)),
    waiting: new Sparkline(byId('c-waiting', HTMLElement)),
    kv: new Sparkline(byId('c-kv', HTMLElement)),
    rate: new Sparkline(byId('c-rate', HTMLElement)),
  };
  const table = byId('policy-table', HTMLTableElement);
  const error = byId('metrics-error', HTMLParagraphElement);
  let previous: Snapshot | null = null;

  const render = (s: Snapshot, rate: number): void => {
    byId('m-running', HTMLElement).textContent = String(s.running);
    byId('m-waiting', HTMLElement).textContent = String(s.waiting);
    byId('m-kv', HTMLElement).textContent = bytes(s.kvBytes);
    byId('m-rate', HTMLElement).textContent = rate.toFixed(1);
    charts.running.push(s.running);
    charts.waiting.push(s.waiting);
    charts.kv.push(s.kvBytes);
    charts.rate.push(rate);
    const body = table.tBodies[0];
    if (body === undefined) return;
    body.replaceChildren();
    for (const [policy, f] of [...s.policies].sort((x, y) => x[0].localeCompare(y[0]))) {
      const row = body.insertRow();
      row.dataset['policy'] = policy;
      for (const cell of [policy, String(f.requests), seconds(f.meanLatencyS), seconds(f.meanTtftS), number(f.shadowKl, 4), number(f.shadowTop1, 3)]) {
        row.insertCell().textContent = cell;
      }
    }
  };

  const scrape = async (): Promise<void> => {
    if (document.hidden) return;
    try {
      const s = snapshot(parseMetrics(await getText('/metrics')), performance.now());
      render(s, tokenRate(previous, s));
      previous = s;
      error.textContent = '';
    } catch (err) {
      error.textContent = `metrics: ${(err as Error).message}`;
    }
  };
  void scrape();
  setInterval(() => void scrape(), intervalMs);
}
