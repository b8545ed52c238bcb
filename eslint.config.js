// ESLint (flat config). src/ gets typescript-eslint's strict type-checked rules; tests
// get the lighter recommended set without type information; scripts the JS basics.
// Formatting is prettier's job (eslint-config-prettier turns off rules it owns).
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

const nodeGlobals = { process: 'readonly', console: 'readonly', URL: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly' };

export default defineConfig(
  { ignores: ['dist/', 'node_modules/', 'bench-out/', '.cache/', '.tap/', '.scratch/', 'tools/train/runs/'] },
  {
    files: ['src/**/*.ts'],
    extends: [js.configs.recommended, tseslint.configs.strictTypeChecked],
    // The project service types each file with its nearest tsconfig.json: src/playground/
    // (browser code, DOM types, excluded from the root tsconfig) gets src/playground/tsconfig.json,
    // the rest of src/ the root one; both are linted with the same rules.
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // Numbers in messages (`layer ${i}`) are the common, harmless case; objects,
      // unknown, null and undefined in a template are still errors.
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      // noUncheckedIndexedAccess types every typed-array read `number | undefined`. The
      // hot loops (dtype conversion, routing, attention statistics) index in range and say
      // so with `!`, free at run time; a `?? 0` fallback would hide an off-by-one instead.
      '@typescript-eslint/no-non-null-assertion': 'off',
      // `() => this.abort(id)` as a void callback is the idiom for listeners and hooks.
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true }],
      // A method implementing an interface may ignore an argument; it says so with `_`.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // Async without await is deliberate where the contract is a promise: fastify
      // handlers return their payload, createModel's API is async. no-floating-promises
      // and no-misused-promises catch the mistakes that matter.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    files: ['test/**/*.ts'],
    extends: [js.configs.recommended, tseslint.configs.recommended],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true }],
      // Test doubles (the scripted engine) return async iterators that update the double.
      '@typescript-eslint/no-this-alias': 'off',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    extends: [js.configs.recommended],
    languageOptions: { globals: nodeGlobals },
  },
  prettier,
);
