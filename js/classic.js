// The classic drop-in script (seed 004: <script src=/js/index.js>): defines window.qysSdk at
// once, loads the .wasm that sits next to this script, and lets the page call methods right away.
import init, { QysSdk } from '../pkg/qys_sdk_wasm.js';
import { defineQysSdk, loadError } from './lazy.js';

var script = document.currentScript;
var wasmUrl = new URL('qys_sdk_wasm_bg.wasm', (script && script.src) || location.href).href;
var ready = init({ module_or_path: wasmUrl }).then(
  function () { return QysSdk; },
  function (cause) { throw loadError(wasmUrl, cause); }
);
ready.catch(function () {}); // reported through each call's rejection, not as unhandled
window.qysSdk = defineQysSdk(function () { return ready; });
