// The classic script's global `qysSdk` in a plain browser project (tsconfig.plain.json).
/// <reference types="qys-sdk-wasm/classic" />

new qysSdk('/qys/proxy').personalAuth({ mode: 'BANK', contact: '13700000044' }, { authFailCb: () => {} })
  .then((frame: HTMLElement) => document.body.appendChild(frame));
