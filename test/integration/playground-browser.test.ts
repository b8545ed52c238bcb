/**
 * The playground in a real browser: headless Chromium (Debian's `chromium`,
 * installed by .ci/run; CAPSERVE_CHROMIUM names another binary) driven by
 * playwright-core against the real server on stories260K. Loads the page,
 * sends a chat and sees the text grow while it streams, switches policy and
 * sees the cap report change, cancels mid-stream, runs the side-by-side
 * comparison and sees the live metrics fill. On failure a screenshot goes to
 * test-artifacts/ and its path into the error.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startServer, storiesModelDir, type RunningServer } from './server-harness.js';

const CANDIDATES = [process.env['CAPSERVE_CHROMIUM'], '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];
const chromiumPath = CANDIDATES.find((p): p is string => p !== undefined && p !== '' && existsSync(p)) ?? null;
const modelDir = storiesModelDir();
const skip =
  modelDir === null
    ? 'stories260K not found (set CAPSERVE_SHARED to the shared folder)'
    : chromiumPath === null
      ? 'no Chromium found (apt-get install chromium, or set CAPSERVE_CHROMIUM to its binary)'
      : false;

const PROMPT =
  'Once upon a time there was a little girl named Lily. She loved to play in the park with her friends. One day she found a big red ball under a tree.';

/** Runs a JavaScript expression in the page (strings, so this file needs no DOM types). */
function inPage<T>(page: Page, expression: string): Promise<T> {
  return page.evaluate(expression) as Promise<T>;
}

/** The figures of the cap report inside the element `selector` matches (the index-th match), by data-field. */
function figures(page: Page, selector: string, index = 0): Promise<Record<string, string>> {
  return inPage(
    page,
    `Object.fromEntries([...(document.querySelectorAll(${JSON.stringify(selector)})[${index}]?.querySelectorAll('[data-field]') ?? [])].map((e) => [e.dataset.field, e.textContent]))`,
  );
}

/** Polls a page expression until it is truthy (waitForFunction with a string would need eval, which the page's CSP forbids). */
async function waitUntil(page: Page, expression: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await inPage<boolean>(page, `Boolean(${expression})`))) {
    if (Date.now() > deadline) throw new Error(`page never satisfied ${expression} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const ANSWER = '#messages .msg.assistant';

/** Runs the steps; on failure saves a full-page screenshot to test-artifacts/NAME.png and names it in the error. */
async function withScreenshot(page: Page, name: string, steps: () => Promise<void>): Promise<void> {
  try {
    await steps();
  } catch (err) {
    const dir = path.resolve('test-artifacts');
    mkdirSync(dir, { recursive: true });
    const shot = path.join(dir, `${name}.png`);
    await page.screenshot({ path: shot, fullPage: true }).catch(() => undefined);
    if (err instanceof Error) err.message += `\n(screenshot: ${shot})`;
    throw err;
  }
}

/** Sends a chat turn and waits until the n-th answer leaves the streaming state; returns its text lengths as rendered while streaming. */
async function chat(page: Page, n: number, text: string, during?: (page: Page) => Promise<void>): Promise<{ lengths: number[]; state: string; text: string }> {
  // Every rendering of the newest answer's text, recorded in the page as the DOM changes (installed before sending).
  await inPage(
    page,
    `(() => {
      window.observer?.disconnect();
      window.lengths = [];
      window.observer = new MutationObserver(() => {
        const answers = document.querySelectorAll('${ANSWER}[data-state=streaming] .text');
        const last = answers[answers.length - 1];
        if (last !== undefined) window.lengths.push(last.textContent.length);
        // Cancel at the first rendered token, in the same tick: the tiny model finishes 400 tokens in well under a
        // second on an idle machine, faster than a driver round trip (a click waits for the button to be stable).
        if (window.cancelAtFirstToken === true && last !== undefined && last.textContent.length > 0) {
          window.cancelAtFirstToken = false;
          document.getElementById('cancel').click();
        }
      });
      window.observer.observe(document.getElementById('messages'), { childList: true, characterData: true, subtree: true });
    })()`,
  );
  await page.fill('#prompt', text);
  await page.click('#send');
  if (during !== undefined) await during(page);
  const answer = `document.querySelectorAll('${ANSWER}')[${n - 1}]`;
  await waitUntil(page, `(${answer}?.dataset.state ?? 'streaming') !== 'streaming'`);
  return {
    lengths: await inPage<number[]>(page, 'window.lengths'),
    state: await inPage<string>(page, `${answer}.dataset.state`),
    text: await inPage<string>(page, `${answer}.querySelector('.text').textContent`),
  };
}

t.test('playground: chat streams, policy switch changes cap, cancel stops, comparison and metrics render', { skip, timeout: 180_000 }, async (t) => {
  const server: RunningServer = await startServer(modelDir as string);
  t.after(() => server.close());
  const browser: Browser = await chromium.launch({ executablePath: chromiumPath as string, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  t.after(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const consoleErrors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('pageerror', (err) => consoleErrors.push(err.message));
  // Nothing may leave the machine: every request the page makes goes to the server under test.
  const foreign: string[] = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(server.baseUrl) && !r.url().startsWith(server.baseUrl.replace('http:', 'ws:'))) foreign.push(r.url());
  });

  await withScreenshot(page, 'playground-failure', async () => {
    await page.goto(server.baseUrl);
    await page.waitForSelector('body[data-policies]');
    await page.waitForSelector('#health.ok');
    const options = await inPage<string[]>(page, `[...document.querySelectorAll('#policy option')].map((o) => o.value)`);
    assert.ok(options.includes('full') && options.includes('snapkv-25'), `policy picker filled from /v1/policies: ${options.join(', ')}`);

    // 1. Chat under the router's default (full), greedy, fixed length: tokens stream in.
    await page.fill('#temperature', '0');
    await page.fill('#max-tokens', '60');
    await page.check('#ignore-eos');
    const first = await chat(page, 1, PROMPT);
    assert.equal(first.state, 'incomplete', 'ended by max tokens');
    const growing = first.lengths.filter((l, i) => l > 0 && l > (first.lengths[i - 1] ?? 0));
    assert.ok(growing.length >= 3, `the answer was rendered growing at least three times while streaming: ${first.lengths.join(',')}`);
    const full = await figures(page, ANSWER, 0);
    assert.equal(full['policy'], 'full');
    assert.equal(full['output_tokens'], '60');
    assert.match(full['ttft_ms'] ?? '', /^\d+$/);
    assert.match(full['tokens_per_second'] ?? '', /^\d+(\.\d)?$/);

    // 2. Switch to snapkv-25: the cap report names it and keeps fewer tokens.
    await page.click('#clear');
    await page.selectOption('#policy', 'snapkv-25');
    assert.match((await page.textContent('#policy-info')) ?? '', /snapkv-25: kv-eviction \(snapkv\)/);
    const second = await chat(page, 1, PROMPT);
    assert.equal(second.state, 'incomplete');
    const snap = await figures(page, ANSWER, 0);
    assert.equal(snap['policy'], 'snapkv-25');
    assert.equal(snap['kind'], 'kv-eviction');
    const kept = (s: string | undefined): number => Number((s ?? '').split(' / ')[0]);
    assert.ok(
      kept(snap['kv_tokens_retained']) < kept(full['kv_tokens_retained']),
      `snapkv-25 keeps fewer tokens: ${snap['kv_tokens_retained']} vs ${full['kv_tokens_retained']}`,
    );

    // 3. Cancel mid-stream: a long answer, cancelled after its first tokens, keeps what was generated.
    await page.click('#clear');
    await page.selectOption('#policy', 'full');
    await page.fill('#max-tokens', '400');
    await inPage(page, 'window.cancelAtFirstToken = true');
    const cancelled = await chat(page, 1, 'Tell me a long story.');
    assert.equal(cancelled.state, 'cancelled');
    assert.ok(cancelled.text.length > 0, 'the partial answer stays');
    const cancelledFigures = await figures(page, ANSWER, 0);
    assert.equal(cancelledFigures['status'], 'cancelled');
    assert.ok(await page.isEnabled('#send'), 'ready for the next turn');

    // 4. Side by side: the same prompt under two policies.
    await page.fill('#max-tokens', '24');
    await page.fill('#compare-prompt', PROMPT);
    await page.selectOption('#compare-a', 'full');
    await page.selectOption('#compare-b', 'streaming-llm-25');
    await page.click('#compare-run');
    await page.waitForSelector('#compare-right[data-state=incomplete]', { timeout: 60_000 });
    assert.equal((await figures(page, '#compare-left'))['policy'], 'full');
    assert.equal((await figures(page, '#compare-right'))['policy'], 'streaming-llm-25');

    // 5. Live metrics: the per-policy table and the charts fill from /metrics.
    await page.waitForSelector('#policy-table tr[data-policy=snapkv-25]', { timeout: 10_000 });
    await waitUntil(page, `Number(document.querySelector('#c-rate svg')?.dataset.points ?? 0) >= 2`, 10_000);
    assert.match((await page.textContent('#m-kv')) ?? '', /B$/);

    assert.deepEqual(foreign, [], 'no request leaves the server');
    assert.deepEqual(consoleErrors, [], 'no errors in the page');
  });
});

t.test(
  'playground with API keys (server.playground=true): the page is public, the typed key opens the API and the websocket',
  { skip, timeout: 120_000 },
  async (t) => {
    const server: RunningServer = await startServer(modelDir as string, ['server.apiKeys=[pg-key/+1]', 'server.playground=true']);
    t.after(() => server.close());
    const browser: Browser = await chromium.launch({ executablePath: chromiumPath as string, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
    t.after(() => browser.close());
    const page = await browser.newPage();
    await withScreenshot(page, 'playground-keys-failure', async () => {
      await page.goto(server.baseUrl);
      await waitUntil(page, `document.getElementById('policy-info').textContent.includes('401')`, 20_000);
      await page.fill('#api-key', 'pg-key/+1');
      await page.dispatchEvent('#api-key', 'change');
      await page.waitForSelector('body[data-policies]');
      await page.fill('#max-tokens', '8');
      const answer = await chat(page, 1, 'Once upon a time');
      assert.match(answer.state, /^(completed|incomplete)$/, 'the websocket accepted the key as a subprotocol');
      assert.equal((await figures(page, ANSWER, 0))['policy'], 'full');
    });
  },
);
