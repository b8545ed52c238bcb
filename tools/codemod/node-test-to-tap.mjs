#!/usr/bin/env node
/**
 * Codemod: converts test files written for node:test into node-tap tests, in place.
 *
 *   node tools/codemod/node-test-to-tap.mjs [file-or-dir ...]     (default: test/)
 *
 * Re-runnable: files that no longer import node:test are left alone, so it can be run
 * again after a branch written against node:test is merged. What it changes, and only this
 * (assertions stay node:assert, untouched: their semantics and their TypeScript `asserts`
 * narrowing are kept exactly; tap fails a test on any thrown error):
 *   - `import test, { before, after } from 'node:test'`  ->  `import t from 'tap'`
 *     (`tap` instead of `t` where a `t` in scope would shadow it);
 *   - `test(name, [options], fn)` -> `t.test(...)`, `before(fn)` -> `t.before(fn)`,
 *     `after(fn)` -> `t.teardown(fn)`, `beforeEach` / `afterEach` -> `t.beforeEach` / ...
 *     (on the root, only `teardown` makes tap end the file once its tests are done;
 *     with `t.after` a server closed there keeps the process, and the file, waiting);
 *   - every test callback becomes `async` (tap ends a test when its promise settles;
 *     a synchronous callback would have to call `t.end()`);
 *   - on a test's context: `ctx.diagnostic(msg)` -> `ctx.comment(msg)`, and the
 *     runtime skip `ctx.skip(reason)` -> `ctx.plan(0, reason)` (tap's way to mark the
 *     running test skipped); `ctx.after`, `ctx.test`, `ctx.name` are the same in tap.
 *   - test options `skip`, `todo`, `only`, `timeout` (ms) mean the same in tap.
 * In a file already on tap it fixes one thing, an earlier version's output: the root's
 * `t.after(fn)` -> `t.teardown(fn)`.
 * Anything else it meets (describe/it, mock, a test function passed by reference,
 * `ctx.todo()` ...) is reported with file and line, the file is left unchanged, and the
 * exit status is 1.
 */
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';

/** node:test's hooks and the root-level tap method for each. */
const HOOKS = new Map([
  ['before', 'before'],
  ['after', 'teardown'],
  ['beforeEach', 'beforeEach'],
  ['afterEach', 'afterEach'],
]);
const OPTIONS = new Set(['skip', 'todo', 'only', 'timeout']);
const CONTEXT_SAME = new Set(['after', 'test', 'name', 'plan', 'comment']);

function sourceFiles(path) {
  if (statSync(path).isDirectory()) {
    return readdirSync(path)
      .sort()
      .flatMap((name) => (name === 'node_modules' || name === 'fixtures' ? [] : sourceFiles(join(path, name))));
  }
  return /\.(m|c)?tsx?$|\.(m|c)?js$/.test(path) && !path.endsWith('.d.ts') ? [path] : [];
}

/** True when some scope enclosing `node` declares the name `name` (parameters, variables, functions). */
function shadowed(node, name, sf) {
  for (let n = node.parent; n !== undefined && n !== sf; n = n.parent) {
    if (ts.isFunctionLike(n) && n.parameters.some((p) => ts.isIdentifier(p.name) && p.name.text === name)) return true;
    if (ts.isBlock(n) || ts.isSourceFile(n)) {
      for (const st of n.statements) {
        if (ts.isVariableStatement(st) && st.declarationList.declarations.some((d) => ts.isIdentifier(d.name) && d.name.text === name)) return true;
        if (ts.isFunctionDeclaration(st) && st.name?.text === name) return true;
      }
    }
  }
  return sf.statements.some(
    (st) =>
      (ts.isVariableStatement(st) && st.declarationList.declarations.some((d) => ts.isIdentifier(d.name) && d.name.text === name)) ||
      (ts.isFunctionDeclaration(st) && st.name?.text === name),
  );
}

/** In a file on tap: the root object's `after(fn)` becomes `teardown(fn)` (see the header). */
function fixTapRoot(sf, checker) {
  const text = sf.text;
  const tapImport = sf.statements.find((s) => ts.isImportDeclaration(s) && ts.isStringLiteral(s.moduleSpecifier) && s.moduleSpecifier.text === 'tap');
  const name = tapImport?.importClause?.name;
  const rootSymbol = name === undefined ? undefined : checker.getSymbolAtLocation(name);
  if (rootSymbol === undefined) return { text, changed: false, problems: [] };
  const edits = [];
  const visit = (node) => {
    if (
      ts.isCallExpression(node) &&
      ts.isPropertyAccessExpression(node.expression) &&
      node.expression.name.text === 'after' &&
      ts.isIdentifier(node.expression.expression) &&
      checker.getSymbolAtLocation(node.expression.expression) === rootSymbol
    ) {
      edits.push({ start: node.expression.name.getStart(sf), end: node.expression.name.getEnd(), text: 'teardown' });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  edits.sort((a, b) => b.start - a.start);
  let out = text;
  for (const e of edits) out = out.slice(0, e.start) + e.text + out.slice(e.end);
  return { text: out, changed: out !== text, problems: [] };
}

/** Converts one parsed file; `checker` resolves which identifiers are node:test's bindings. */
export function convert(sf, checker) {
  const text = sf.text;
  const file = sf.fileName;
  const problems = [];
  const edits = [];
  const where = (node) => `${file}:${sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1}`;

  const imports = sf.statements.filter((s) => ts.isImportDeclaration(s) && ts.isStringLiteral(s.moduleSpecifier) && s.moduleSpecifier.text === 'node:test');
  if (imports.length === 0) return fixTapRoot(sf, checker);

  /** import binding's symbol -> 'test' | hook name */
  const bound = new Map();
  const bind = (nameNode, kind) => {
    const sym = checker.getSymbolAtLocation(nameNode);
    if (sym === undefined) problems.push(`${where(nameNode)}: cannot resolve \`${nameNode.text}\``);
    else bound.set(sym, kind);
  };
  const kindOf = (id) => {
    const sym = ts.isIdentifier(id) ? checker.getSymbolAtLocation(id) : undefined;
    return sym === undefined ? undefined : bound.get(sym);
  };
  for (const imp of imports) {
    const clause = imp.importClause;
    if (clause === undefined || clause.isTypeOnly) {
      problems.push(`${where(imp)}: a bare or type-only import of node:test`);
      continue;
    }
    if (clause.name !== undefined) bind(clause.name, 'test');
    const named = clause.namedBindings;
    if (named !== undefined && ts.isNamespaceImport(named)) problems.push(`${where(imp)}: namespace import of node:test`);
    if (named !== undefined && ts.isNamedImports(named)) {
      for (const el of named.elements) {
        const imported = (el.propertyName ?? el.name).text;
        if (imported === 'test' || imported === 'default') bind(el.name, 'test');
        else if (HOOKS.has(imported)) bind(el.name, imported);
        else problems.push(`${where(el)}: node:test's \`${imported}\` has no conversion here`);
      }
    }
  }

  // The root name: `t` unless a `t` declared around some use would shadow it.
  let root = 't';
  const visitShadow = (node) => {
    if (ts.isIdentifier(node) && kindOf(node) !== undefined && ts.isCallExpression(node.parent) && node.parent.expression === node && shadowed(node, 't', sf))
      root = 'tap';
    ts.forEachChild(node, visitShadow);
  };
  visitShadow(sf);

  const contexts = new Set(); // symbols of the parameters that hold a test context

  /** A test call: options object checked, callback made async, its context parameter remembered. */
  const testCall = (call) => {
    const args = call.arguments;
    const fn = args.at(-1);
    if (fn === undefined || !(ts.isArrowFunction(fn) || ts.isFunctionExpression(fn))) {
      problems.push(`${where(call)}: test callback is not an inline function`);
      return;
    }
    for (const opt of args.slice(0, -1)) {
      if (!ts.isObjectLiteralExpression(opt)) continue;
      for (const p of opt.properties) {
        const name = p.name !== undefined && (ts.isIdentifier(p.name) || ts.isStringLiteral(p.name)) ? p.name.text : '?';
        if (!OPTIONS.has(name)) problems.push(`${where(p)}: test option \`${name}\` has no tap equivalent here`);
      }
    }
    if (!(ts.getCombinedModifierFlags(fn) & ts.ModifierFlags.Async)) edits.push({ start: fn.getStart(sf), end: fn.getStart(sf), text: 'async ' });
    const ctx = fn.parameters[0];
    if (ctx !== undefined) {
      const sym = ts.isIdentifier(ctx.name) ? checker.getSymbolAtLocation(ctx.name) : undefined;
      if (sym !== undefined) contexts.add(sym);
      else problems.push(`${where(ctx)}: destructured test context`);
    }
  };

  const isContext = (expr) => {
    const sym = ts.isIdentifier(expr) ? checker.getSymbolAtLocation(expr) : undefined;
    return sym !== undefined && contexts.has(sym);
  };

  const visit = (node) => {
    if (ts.isImportDeclaration(node) && imports.includes(node)) {
      if (node === imports[0]) edits.push({ start: node.getStart(sf), end: node.getEnd(), text: `import ${root} from 'tap';` });
      else edits.push({ start: node.getFullStart(), end: node.getEnd(), text: '' });
      return;
    }
    if (ts.isCallExpression(node)) {
      const callee = node.expression;
      const kind = kindOf(callee);
      if (kind !== undefined) {
        edits.push({ start: callee.getStart(sf), end: callee.getEnd(), text: `${root}.${kind === 'test' ? 'test' : HOOKS.get(kind)}` });
        if (kind === 'test') testCall(node);
      } else if (ts.isPropertyAccessExpression(callee) && isContext(callee.expression)) {
        const method = callee.name.text;
        if (method === 'test') testCall(node);
        else if (method === 'diagnostic') edits.push({ start: callee.name.getStart(sf), end: callee.name.getEnd(), text: 'comment' });
        else if (method === 'skip') {
          const reason = node.arguments[0];
          const args = reason === undefined ? "0, 'skipped'" : `0, ${reason.getText(sf)}`;
          edits.push({ start: callee.name.getStart(sf), end: node.getEnd(), text: `plan(${args})` });
          ts.forEachChild(node, visit);
          return;
        } else if (!CONTEXT_SAME.has(method)) problems.push(`${where(node)}: test context method \`${method}\` has no conversion here`);
      }
    } else if (ts.isIdentifier(node) && kindOf(node) !== undefined && !(ts.isCallExpression(node.parent) && node.parent.expression === node)) {
      const parent = node.parent;
      const declaration = ts.isImportClause(parent) || ts.isImportSpecifier(parent);
      if (!declaration && !(ts.isPropertyAccessExpression(parent) && parent.name === node))
        problems.push(`${where(node)}: node:test's \`${node.text}\` used other than as a call`);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);

  if (problems.length > 0) return { text, changed: false, problems };
  edits.sort((a, b) => b.start - a.start);
  let out = text;
  for (const e of edits) out = out.slice(0, e.start) + e.text + out.slice(e.end);
  return { text: out, changed: out !== text, problems };
}

const isMain = import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isMain) {
  const targets = process.argv.slice(2);
  const files = (targets.length > 0 ? targets : ['test']).flatMap(sourceFiles);
  // One program over the files, without resolving imports or the default lib: the binder
  // alone tells which identifier is which declaration, and that is all this needs.
  const program = ts.createProgram(files, { noResolve: true, noLib: true, allowJs: true, types: [] });
  const checker = program.getTypeChecker();
  let changed = 0;
  let failed = 0;
  for (const file of files) {
    const sf = program.getSourceFile(file);
    if (sf === undefined) throw new Error(`${file}: not parsed`);
    const { text, changed: did, problems } = convert(sf, checker);
    for (const p of problems) console.error(p);
    if (problems.length > 0) failed += 1;
    if (did) {
      writeFileSync(file, text);
      changed += 1;
    }
  }
  console.log(`node-test-to-tap: ${changed} file(s) converted, ${failed} left unchanged with problems, ${files.length} scanned`);
  process.exit(failed > 0 ? 1 : 0);
}
