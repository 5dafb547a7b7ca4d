// How both entries load the SDK's module: the .wasm; or, where WebAssembly is off (iOS Lockdown
// Mode, JIT-less webviews) or refuses the module (a CSP without 'wasm-unsafe-eval'), its wasm2js
// translation, a classic script fetched only then (scripts/wasm2js.mjs). Both are handed to the
// glue through its own two steps, `__wbg_get_imports` and `__wbg_finalize_init`; its `init`,
// which only knows WebAssembly, is not bundled.
import { QysSdk, __wbg_get_imports, __wbg_finalize_init } from '../pkg/qys_sdk_wasm.js';
import { loadError } from './lazy.js';

/** The `whenReady` of `defineQysSdk`: loads on the first call, and again on the next call after
 * a failure. `urls()` gives the .wasm's URL and the fallback's. */
export function loader(urls) {
  var ready = null;
  return function () {
    if (!ready) {
      // (A server runtime without fetch rejects, rather than throws.)
      ready = Promise.resolve(urls()).then(load);
      ready.then(null, function () { ready = null; });
    }
    return ready;
  };
}

function load(urls) {
  var url = urls[0];
  var refused;
  function fallback(cause) {
    refused = cause && [url, cause];
    url = urls[1];
    return new Promise(function (resolve) {
      var script = document.createElement('script');
      script.onload = script.onerror = function () { resolve(script.f); };
      script.src = url;
      document.head.append(script);
    }).then(function (factory) {
      // Not loaded, blocked, or not the SDK's file (e.g. a page served in its place).
      if (!factory) throw 'it did not run';
      return { exports: factory(__wbg_get_imports()) };
    });
  }
  // A failed fetch is the page's to fix: the fallback would not help, so it is reported. A module
  // the engine refuses falls back; if the fallback fails too, the error gives both reasons (so a
  // page served in the .wasm's place shows as "expected magic word 00 61 73 6d").
  return (typeof WebAssembly == 'object' ? fetch(url).then(function (response) {
    if (!response.ok) throw 'HTTP ' + response.status;
    return response.arrayBuffer();
  }).then(function (bytes) {
    return WebAssembly.instantiate(bytes, __wbg_get_imports()).then(function (result) {
      return result.instance;
    }, fallback);
  }) : fallback()).then(function (instance) {
    __wbg_finalize_init(instance);
    return QysSdk;
  }, function (cause) {
    throw loadError(url, cause, refused);
  });
}
