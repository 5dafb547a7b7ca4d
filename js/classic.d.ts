// Types of the classic script, dist/index.js (built from js/classic.js); copied to dist/index.d.ts.
/** The classic script defines `window.qysSdk`. */
declare global {
  var qysSdk: typeof import('./qys-sdk.js').QysSdk;
}
export {};
