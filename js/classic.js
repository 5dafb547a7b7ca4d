// The classic drop-in script (seed 004: <script src=/js/index.js>): defines window.qysSdk at
// once, loads the .wasm that sits next to this script (or the wasm2js fallback next to it), and
// lets the page call methods right away; a failed load is tried again at the next call.
import { defineQysSdk } from './lazy.js';
import { loader } from './load.js';

var script = document.currentScript;
var base = (script && script.src) || location.href;
var whenReady = loader(function () {
  return [new URL('qys_sdk_wasm_bg.wasm', base).href, new URL('qys_sdk_wasm2js.js', base).href];
});
whenReady();
window.qysSdk = defineQysSdk(whenReady);
