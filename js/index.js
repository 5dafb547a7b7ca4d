// The ES module entry of the npm package: `import { qysSdk } from 'qys-sdk-wasm'`. Importing
// touches no window; the wasm is fetched and instantiated on the first call (again at the next
// call if that failed).
import { defineQysSdk } from './lazy.js';
import { loader } from './load.js';

export var qysSdk = defineQysSdk(loader(function () {
  // Written so that webpack 5 and Vite see both files and emit them next to the bundle.
  return [new URL('./qys_sdk_wasm_bg.wasm', import.meta.url), new URL('./qys_sdk_wasm2js.js', import.meta.url)];
}));
export { qysSdk as QysSdk };
export default qysSdk;
