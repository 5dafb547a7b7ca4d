// The ES module entry of the npm package: `import { qysSdk } from 'qys-sdk-wasm'`. Importing
// touches no window; the wasm is fetched and instantiated on the first call, once.
import init, { QysSdk } from '../pkg/qys_sdk_wasm.js';
import { defineQysSdk, loadError } from './lazy.js';

var ready = null;
function whenReady() {
  if (!ready) {
    // Written so that webpack 5 and Vite see the asset and emit it next to the bundle.
    var wasmUrl = new URL('./qys_sdk_wasm_bg.wasm', import.meta.url);
    ready = init({ module_or_path: wasmUrl }).then(
      function () { return QysSdk; },
      function (cause) { ready = null; throw loadError(String(wasmUrl), cause); }
    );
  }
  return ready;
}

export var qysSdk = defineQysSdk(whenReady);
export { qysSdk as QysSdk };
export default qysSdk;
