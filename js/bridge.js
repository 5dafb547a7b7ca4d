// The page, seen from the wasm glue (src/glue/bridge.rs): a few coarse helpers, each doing one
// job on the page and reporting plain facts back. Every decision (validation, protocol, which
// message to believe, what to show, when to clean up) is taken in Rust. Touches no `window`
// until called.

/** The value's type, as `ty` in bridge.rs (booleans apart). */
export function typ(v) {
  var t = typeof v;
  return v === undefined ? 0 : v === null ? 1 : v === false ? 2 : v === true ? 3
    : t == 'number' ? 4 : t == 'string' ? 6 : t == 'bigint' ? 7
    : t == 'symbol' ? 8 : t == 'function' ? 9 : 10;
}

/** `Reflect.get(o, k)`; `undefined` when `o` is not an object or the getter throws. */
export function get(o, k) {
  try { return Reflect.get(o, k); } catch (e) {}
}

export function set(o, k, v) { o[k] = v; }

export function text(v) { return String(v); }

var bits = new DataView(new ArrayBuffer(8));

function hex(n) { return ('0000000' + n.toString(16)).slice(-8); }

/** `v` as flat text (`Value::from_flat` in src/value.rs: the wasm reads that instead of JSON),
 * seen as `JSON.stringify` sees it (`toJSON`, boxed primitives; functions, symbols and
 * `undefined` are nothing: left out of objects, `null` in arrays) except that NaN and ±Infinity
 * stay numbers, for the core to refuse. Throws on BigInt and deeper than 64 levels (cycles). */
function walk(v, depth, key) {
  if (depth > 64) throw 0;
  // As in JSON: toJSON of objects, functions and BigInts, not of other primitives.
  if (v != null && (Object(v) === v || typeof v == 'bigint') && typeof v.toJSON == 'function') v = v.toJSON(key);
  if (v instanceof Number || v instanceof String || v instanceof Boolean) v = v.valueOf();
  var t = typeof v;
  if (v === null) return 'n';
  if (t == 'boolean') return v ? 't' : 'f';
  if (t == 'number') {
    bits.setFloat64(0, v);
    return 'd' + hex(bits.getUint32(0)) + hex(bits.getUint32(4));
  }
  if (t == 'string') return 's' + v.length + ':' + v;
  if (t == 'bigint') throw 0;
  if (t != 'object') return;
  var keys = Array.isArray(v) ? null : Object.keys(v);
  var n = (keys || v).length, out = '', count = 0;
  for (var i = 0; i < n; i++) {
    var k = keys ? keys[i] : String(i), s = walk(v[k], depth + 1, k);
    if (!keys) out += s === undefined ? 'n' : s;
    else if (s !== undefined) out += k.length + ':' + k + s, count++;
  }
  return (keys ? 'o' + count : 'a' + n) + ':' + out;
}

/** `v` as flat text; `undefined` when it is nothing, or cannot be written (BigInt, cycles). */
export function flat(v) {
  try { return walk(v, 0, ''); } catch (e) {}
}

/** JSON text as flat text; `undefined` when it is not JSON. */
export function fromJson(s) {
  try { return walk(JSON.parse(s), 0, ''); } catch (e) {}
}

export function parse(s) { return JSON.parse(s); }


/** Whether `a` is `b`, neither being null or undefined. */
export function same(a, b) { return a != null && a === b; }

export function win() { return typeof window == 'object' ? window : undefined; }

export function url(input, base) {
  try { return new URL(input, base); } catch (e) {}
}

export function random(bytes) {
  try { crypto.getRandomValues(bytes); return true; } catch (e) { return false; }
}

/** `sessionStorage[k]` (`''` when unset), or stores `v` there (then `''`); `undefined` when the
 * page has no usable sessionStorage. */
export function store(k, v) {
  try {
    if (v == null) return sessionStorage.getItem(k) || '';
    sessionStorage.setItem(k, v);
    return '';
  } catch (e) {}
}

/** Replaces the current history entry's query by `search`, keeping its path, fragment and
 * state (an absolute URL: a path starting with `//` is not read as another host). */
export function replace(search) {
  try {
    var u = new URL(location.href);
    u.search = search;
    history.replaceState(history.state, '', u.href);
  } catch (e) {}
}

export function assign(u) {
  try { location.assign(u); return true; } catch (e) { return false; }
}

/** `wx.miniProgram.navigateTo({ url, complete })`; false if it throws. */
export function navigate(mp, url, complete) {
  try { mp.navigateTo({ url: url, complete: complete }); return true; } catch (e) { return false; }
}

var loaded = new WeakSet();

/** A borderless 100% × 100% iframe that notes when it has loaded a page; `undefined` without a
 * document. */
export function iframe(src, title, camera) {
  try {
    var f = document.createElement('iframe');
    f.addEventListener('load', function () { loaded.add(f); });
    f.src = src;
    f.title = title;
    if (camera) f.setAttribute('allow', 'camera');
    f.style.border = '0';
    f.style.width = f.style.height = '100%';
    return f;
  } catch (e) {}
}

/** A live status `<div>` with `text`; `undefined` without a document. */
export function status(text) {
  try {
    var d = document.createElement('div');
    d.setAttribute('role', 'status'); // implies aria-live=polite
    d.textContent = text;
    return d;
  } catch (e) {}
}

/** Whether the iframe loaded a page (so the page did put it in the document) and is gone. */
export function gone(f) { return loaded.has(f) && !f.isConnected; }

export function on(t, kind, f) { t.addEventListener(kind, f); }

export function off(t, kind, f) { t.removeEventListener(kind, f); }

/** POSTs a form body, aborted after `ms`; calls `done` once with `<status>:<body as flat text,
 * or nothing when it is not JSON>`, or
 * `T:` (timed out) or `N:<reason>` (no answer). Returns the handle `abort` takes. */
export function post(url, body, ms, done) {
  var h = {};
  h.end = function (s) {
    if (h.e) return;
    h.e = 1;
    clearTimeout(h.t);
    done(s);
  };
  h.t = setTimeout(function () { h.end('T:'); }, ms);
  new Promise(function (ok) {
    if (typeof AbortController == 'function') h.c = new AbortController();
    ok(fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: body,
      signal: h.c && h.c.signal,
    }));
  }).then(function (r) {
    return r.text().then(function (t) { return r.status + ':' + (fromJson(t) || ''); });
  }).catch(function (e) {
    return 'N:' + (e instanceof Error ? e.message : '');
  }).then(h.end);
  return h;
}

/** Stops a request's timer and aborts it; `done` then runs with `N:aborted` (nothing once it has
 * settled), also where fetch cannot be aborted (no AbortController: Chrome < 66, Safari < 12.1).
 * Later, not now: the caller may be dropping the request from a list it holds. */
export function abort(h) {
  clearTimeout(h.t);
  if (h.c) h.c.abort();
  Promise.resolve('N:aborted').then(h.end);
}

var deferred = new WeakMap();

/** A promise that `settle` resolves or rejects. */
export function defer() {
  var r;
  var p = new Promise(function (resolve, reject) { r = [resolve, reject]; });
  deferred.set(p, r);
  return p;
}

export function settle(p, ok, v) { deferred.get(p)[ok ? 0 : 1](v); }

/** The `Error` named `QysError` every rejection carries. */
export function error(kind, code, param, message) {
  var e = new Error(message);
  e.name = 'QysError';
  e.kind = kind;
  e.code = code == null ? null : code;
  if (param != null) e.param = param;
  return e;
}

/** Calls a page callback with the JSON `data`, or with no argument; what it throws is reported
 * as an unhandled rejection instead of unwinding through wasm. */
export function call(f, data) {
  try { data == null ? f() : f(JSON.parse(data)); } catch (e) { Promise.reject(e); }
}

export function log(error, a, b) {
  if (error) console.error(a, b); else console.log(a, b);
}
