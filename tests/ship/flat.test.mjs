// js/bridge.js's flat text (read by `Value::from_flat` in the wasm) against JSON: for any value
// JSON can write, the flat text of the value is the flat text of its JSON — toJSON, boxed
// primitives, functions, symbols and undefined, holes, nesting — except NaN and ±Infinity, which
// stay numbers for the core to refuse (and -0, which the core compares equal to 0). Plain Node: bridge.js touches no page at import.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { flat, fromJson } from '../../js/bridge.js';

function random(seed) {
  let s = seed;
  return () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
}

const STRINGS = ['', 'a', '张三', '😀', 'a\ud800', '\udc00b', ':', '1:', 's3:', '"\\\n\u2028', 'x'.repeat(300)];
const LEAVES = [null, true, false, 0, 1.5, -3, 2 ** 53 + 2, 5e-324, 1e300, undefined, () => 1, Symbol('s'),
  new Date(0), new String('boxed'), new Number(7), new Boolean(false), { toJSON: () => 'mine' }];

function value(rand, depth) {
  const r = rand();
  if (depth > 4 || r < 0.45) {
    const leaves = [...LEAVES, ...STRINGS];
    return leaves[Math.floor(rand() * leaves.length)];
  }
  const n = Math.floor(rand() * 4);
  if (r < 0.7) {
    const array = Array.from({ length: n }, () => value(rand, depth + 1));
    if (rand() < 0.2) array.length += 1; // a hole
    return array;
  }
  const object = {};
  for (let i = 0; i < n; i++) object[STRINGS[Math.floor(rand() * STRINGS.length)] + i] = value(rand, depth + 1);
  return object;
}

test('the flat text of a value is the flat text of its JSON', () => {
  const rand = random(7);
  let compared = 0;
  for (let i = 0; i < 3000; i++) {
    const v = value(rand, 0);
    const json = JSON.stringify(v);
    if (json === undefined) {
      assert.equal(flat(v), undefined, `${String(v)}`);
      continue;
    }
    assert.equal(flat(v), fromJson(json), json);
    compared++;
  }
  assert.ok(compared > 2000, `${compared} values compared`);
});

test('toJSON as JSON calls it: on objects, functions and BigInts, not on other primitives', (t) => {
  const f = () => 1;
  f.toJSON = () => 'f';
  for (const v of [{ a: f }, [f]]) assert.equal(flat(v), fromJson(JSON.stringify(v)));
  BigInt.prototype.toJSON = function () { return String(this); };
  String.prototype.toJSON = () => 'never';
  t.after(() => { delete BigInt.prototype.toJSON; delete String.prototype.toJSON; });
  for (const v of [{ a: 5n, b: 0n }, ['s', 'x'], 's']) assert.equal(flat(v), fromJson(JSON.stringify(v)));
  assert.equal(flat({ a: 5n }), 'o1:1:as1:5');
});

test('NaN and ±Infinity stay numbers; BigInt, cycles and nesting deeper than 64 are refused', () => {
  assert.equal(flat(NaN), 'd7ff8000000000000');
  assert.equal(flat({ n: -Infinity }), 'o1:1:ndfff0000000000000');
  assert.equal(flat(1.5), 'd3ff8000000000000');
  assert.equal(flat(-0), 'd8000000000000000');
  assert.equal(flat('😀a'), 's3:😀a', 'lengths in UTF-16 units');
  assert.equal(flat({ a: 1n }), undefined);
  const cycle = { a: 1 };
  cycle.self = cycle;
  assert.equal(flat(cycle), undefined);
  const nest = (n) => (n ? [nest(n - 1)] : null);
  assert.equal(flat(nest(64)), `${'a1:'.repeat(64)}n`);
  assert.equal(flat(nest(65)), undefined);
  assert.equal(fromJson(JSON.stringify(nest(65))), undefined);
  assert.equal(fromJson('{"a":'), undefined, 'not JSON');
});
