/**
 * The settings controls of the chat panel (policy picker, favor C/A/P, sampling)
 * read into one Settings value; the favor boxes allow at most two axes, as a
 * policy serves two and pays with the third.
 */
import type { PolicyInfo, Settings } from './api.js';

/** The element the page gives `id`, checked to be a `kind` (HTMLElement or one of its subclasses). */
function byId<T extends HTMLElement>(id: string, kind: { new (): T; readonly prototype: T }): T {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`#${id} missing from the page`);
  if (!(el instanceof kind)) throw new Error(`#${id} is a <${el.tagName.toLowerCase()}>, not the ${kind.name} the playground expects`);
  return el;
}

export { byId };

function numberOf(id: string, fallback: number): number {
  const v = byId(id, HTMLInputElement).valueAsNumber;
  return Number.isFinite(v) ? v : fallback;
}

export function readSettings(policyOverride?: string): Settings {
  const policy = policyOverride ?? byId('policy', HTMLSelectElement).value;
  const seed = byId('seed', HTMLInputElement).valueAsNumber;
  return {
    policy: policy === '' ? null : policy,
    favor: [...document.querySelectorAll<HTMLInputElement>('input[name=favor]:checked')].map((b) => b.value),
    temperature: numberOf('temperature', 0.7),
    topP: numberOf('top-p', 1),
    maxOutputTokens: Math.max(1, Math.round(numberOf('max-tokens', 128))),
    seed: Number.isFinite(seed) ? Math.round(seed) : null,
    ignoreEos: byId('ignore-eos', HTMLInputElement).checked,
  };
}

/** At most two favor boxes checked: the third is disabled while two are. */
export function limitFavor(): void {
  const boxes = [...document.querySelectorAll<HTMLInputElement>('input[name=favor]')];
  const update = (): void => {
    const checked = boxes.filter((b) => b.checked).length;
    for (const b of boxes) b.disabled = !b.checked && checked >= 2;
  };
  for (const b of boxes) b.addEventListener('change', update);
  update();
}

/** Fills a <select> with the policies (and, first, the router's choice when `routerOption`). */
export function fillPolicies(select: HTMLSelectElement, policies: readonly PolicyInfo[], routerOption: boolean): void {
  select.replaceChildren();
  if (routerOption) select.append(new Option('(router decides)', ''));
  for (const p of policies) select.append(new Option(`${p.name} · ${p.cap.favors.join('')}`, p.name));
}
