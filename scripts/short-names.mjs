// Gives the wasm's imports and exports one-letter names, in the .wasm and in wasm-bindgen's glue
// alike. wasm-bindgen names each import `__wbg_<name>_<16 hex digits>` and the module
// `./qys_sdk_wasm_bg.js`; those names sit in both files and hardly compress (−1.6 KB gzip,
// measured in docs/decisions.md). Fails when the glue still mentions an old name afterwards.
// Usage: node scripts/short-names.mjs <file.wasm> <glue.js>   (both rewritten in place; run it
// before wasm-opt)
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';

const [wasmPath, gluePath] = process.argv.slice(2);
const wasm = readFileSync(wasmPath);
let glue = readFileSync(gluePath, 'utf8');

const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
const shortName = (i) => (i < LETTERS.length ? LETTERS[i] : LETTERS[Math.floor(i / LETTERS.length) - 1] + LETTERS[i % LETTERS.length]);

function leb(bytes, at) {
  let value = 0, shift = 0, byte;
  do {
    byte = bytes[at++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  } while (byte & 0x80);
  return [value, at];
}
function encodeLeb(value) {
  const out = [];
  do {
    let byte = value & 0x7f;
    value = Math.floor(value / 128);
    if (value) byte |= 0x80;
    out.push(byte);
  } while (value);
  return Buffer.from(out);
}
const name = (text) => Buffer.concat([encodeLeb(Buffer.byteLength(text)), Buffer.from(text)]);

/** Rewrites a vector section entry by entry: `rename(body, offset, parts, index)` pushes the
 * entry's new bytes onto `parts` and returns the offset of the next entry. */
function renameSection(body, rename) {
  let [count, at] = leb(body, 0);
  const parts = [encodeLeb(count)];
  for (let i = 0; i < count; i++) at = rename(body, at, parts, i);
  return Buffer.concat(parts);
}
function readName(bytes, at) {
  const [len, start] = leb(bytes, at);
  return [bytes.toString('utf8', start, start + len), start + len];
}

const usedExports = new Set([...glue.matchAll(/\bwasm\.([A-Za-z_$][\w$]*)/g)].map((m) => m[1]));
// The import module's name is a tag of this build's .wasm and glue: positional names would let a
// .wasm and a glue of different builds (a stale cache) link and call each other's functions by
// position; with the tag they fail to link.
const MODULE = createHash('sha256').update(wasm).update(glue).digest('base64url').slice(0, 6);
let oldModule = null;
const imports = new Map();
const exports = new Map();
const sections = [wasm.subarray(0, 8)];
let at = 8;
while (at < wasm.length) {
  const id = wasm[at];
  const [size, start] = leb(wasm, at + 1);
  let body = wasm.subarray(start, start + size);
  if (id === 2) {
    body = renameSection(body, (b, p, parts, i) => {
      let module, field, kind;
      [module, p] = readName(b, p);
      [field, p] = readName(b, p);
      if (oldModule !== null && module !== oldModule) throw new Error(`a second import module: ${module}`);
      oldModule = module;
      imports.set(field, shortName(i));
      kind = b[p];
      // The entry's descriptor: a function type index, or a table/memory/global type.
      const descEnd = kind === 0 ? leb(b, p + 1)[1]
        : kind === 1 ? skipLimits(b, p + 2)
        : kind === 2 ? skipLimits(b, p + 1)
        : p + 3;
      parts.push(name(MODULE), name(shortName(i)), b.subarray(p, descEnd));
      return descEnd;
    });
  } else if (id === 7) {
    // Exports the glue never reads (`memcpy`, `__abort_handler`, …) are dropped, so that
    // wasm-opt can remove what only they kept.
    body = renameSection(body, (b, p, parts) => {
      let field;
      [field, p] = readName(b, p);
      const end = leb(b, p + 1)[1];
      if (usedExports.has(field)) {
        exports.set(field, shortName(exports.size));
        parts.push(name(exports.get(field)), b.subarray(p, end));
      }
      return end;
    });
    body = Buffer.concat([encodeLeb(exports.size), body.subarray(leb(body, 0)[1])]);
  }
  sections.push(Buffer.from([id]), encodeLeb(body.length), body);
  at = start + size;
}
function skipLimits(b, p) {
  const flags = b[p];
  p = leb(b, p + 1)[1];
  return flags & 1 ? leb(b, p)[1] : p;
}

// The glue: the import object's keys and module name, and every `wasm.<export>`.
const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
glue = glue.replace(new RegExp(`(["'])${escape(oldModule)}\\1`, 'g'), `"${MODULE}"`);
for (const [old, short] of imports) glue = glue.replace(new RegExp(`\\b${escape(old)}\\b`, 'g'), short);
glue = glue.replace(/\bwasm\.([A-Za-z_$][\w$]*)/g, (all, field) => {
  if (!exports.has(field)) throw new Error(`the glue uses wasm.${field}, which the module does not export`);
  return `wasm.${exports.get(field)}`;
});
for (const old of [oldModule, ...imports.keys()]) {
  if (glue.includes(old)) throw new Error(`the glue still mentions ${old}`);
}
writeFileSync(wasmPath, Buffer.concat(sections));
writeFileSync(gluePath, glue);
console.log(`short names: ${imports.size} imports, ${exports.size} exports`);
