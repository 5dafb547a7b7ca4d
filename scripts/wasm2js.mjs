// The wasm2js fallback (run by scripts/build.sh after wasm-opt, before the entries are bundled):
//  1. lets the entries hand the glue a module that is not a WebAssembly instance: the generated
//     pkg/qys_sdk_wasm.js also exports its `__wbg_get_imports` and `__wbg_finalize_init`;
//  2. writes dist/qys_sdk_wasm2js.js: the final pkg/qys_sdk_wasm_bg.wasm translated to JS by
//     binaryen's wasm2js, for pages where WebAssembly is off (iOS Lockdown Mode, JIT-less
//     webviews) or refused (a CSP without 'wasm-unsafe-eval'). It is a classic script that
//     defines no global: it hands its module factory to the <script> element that ran it
//     (`document.currentScript.f`), so both entries load it the same way (js/load.js).
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, appendFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { transformSync } from 'esbuild';

const glue = 'pkg/qys_sdk_wasm.js';
const wasm = 'pkg/qys_sdk_wasm_bg.wasm';
const out = 'dist/qys_sdk_wasm2js.js';

function fail(why) {
  console.error(`wasm2js fallback: ${why}`);
  process.exit(1);
}

/** `text` with `from` replaced by `to`, where `from` must occur exactly once. */
function replaceOnce(text, from, to) {
  const parts = text.split(from);
  if (parts.length !== 2) fail(`expected one ${JSON.stringify(from)} in the wasm2js output, found ${parts.length - 1}`);
  return parts.join(to);
}

/** The wrappers wasm2js writes where an i64 parameter or result of an import or export is split
 * into two i32 (legalstub$…, legalimport$…): the glue would pass a BigInt there. */
export function legalised(js) {
  return [...new Set(js.match(/\blegal(stub|import|func)\$\w+/g) ?? [])];
}

/** binaryen's wasm2js (ES module output) of the .wasm at `file`. */
export function wasm2js(file) {
  const bin = join(dirname(fileURLToPath(import.meta.url)), '..', 'node_modules', '.bin', 'wasm2js');
  const run = spawnSync(bin, ['-Oz', file], { encoding: 'utf8', maxBuffer: 256 << 20 });
  if (run.status !== 0) throw new Error(`wasm2js ${file}: ${run.stderr}`);
  return run.stdout;
}

function build() {
  // 1. The two internals of wasm-bindgen 0.2.130's `--target web` glue that `init` runs around
  // WebAssembly.instantiate: the imports object, and the step that adopts the instance's exports.
  const source = readFileSync(glue, 'utf8');
  for (const name of ['__wbg_get_imports', '__wbg_finalize_init']) {
    if (!source.includes(`\nfunction ${name}(`)) fail(`${glue} has no function ${name} (another wasm-bindgen version?)`);
  }
  appendFileSync(glue, 'export { __wbg_get_imports, __wbg_finalize_init };\n');

  // 2. The translation.
  let js = wasm2js(wasm);
  // No i64 may cross the boundary: wasm2js would take and give it as two i32.
  const split = legalised(js);
  if (split.length) fail(`i64 crosses the JS boundary, which wasm2js splits in two i32: ${split.join(', ')}`);
  // On memory.grow wasm2js copies memory into a new ArrayBuffer and leaves the old one usable,
  // whereas the glue renews its cached Uint8Array only once it is detached (byteLength 0). Detach
  // it, as WebAssembly.Memory does: a transfer through postMessage detaches at once, in old engines
  // too.
  js = replaceOnce(js, '\n   buffer = newBuffer;\n', '\n   new MessageChannel().port1.postMessage(0, [buffer]);\n   buffer = newBuffer;\n');
  // The ES module wasm2js writes imports the glue's module and instantiates at once; keep its
  // factory, `asmFunc(imports)`, which the entries call with the glue's imports.
  // (The import module's name is whatever scripts/short-names.mjs made it.)
  const imports = js.match(/^import \* as [\w$]+ from '[^']+';\n/gm) ?? [];
  if (imports.length !== 1) fail(`expected one import line in the wasm2js output, found ${imports.length}`);
  js = js.replace(imports[0], '');
  const end = js.indexOf('\nvar retasmFunc = asmFunc(');
  if (end < 0 || !js.includes('\nfunction asmFunc(imports) {')) fail('no asmFunc(imports) in the wasm2js output');
  js = js.slice(0, end);
  const script = `(function () {\n${js}\ndocument.currentScript.f = asmFunc;\n})();\n`;
  const { code } = transformSync(script, { minify: true, target: ['chrome57', 'safari11'], legalComments: 'none' });
  writeFileSync(out, code);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) build();
