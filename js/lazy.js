// The seed's `qysSdk` constructor over the wasm class: construction is synchronous and touches
// nothing; every method first waits for the wasm, then creates the instance once and calls it.
// Errors of the constructor (a bad proxyUrl or options) surface as the method's rejection.
var METHODS = ['personalSign', 'personalAuth', 'enterpriseSign', 'enterpriseAuth', 'resume'];

export function defineQysSdk(whenReady) {
  function qysSdk(proxyUrl, options) {
    if (!(this instanceof qysSdk)) return new qysSdk(proxyUrl, options);
    this._args = [proxyUrl, options];
    this._sdk = null;
    this._destroyed = false;
  }
  function instance(self, QysSdk) {
    if (!self._sdk) {
      self._sdk = new QysSdk(self._args[0], self._args[1]);
      if (self._destroyed) self._sdk.destroy();
    }
    return self._sdk;
  }
  METHODS.forEach(function (name) {
    qysSdk.prototype[name] = function () {
      var self = this;
      var args = arguments;
      return whenReady().then(function (QysSdk) {
        var sdk = instance(self, QysSdk);
        return sdk[name].apply(sdk, args);
      });
    };
  });
  /** Removes every listener and aborts requests in flight; no callback fires afterwards. */
  qysSdk.prototype.destroy = function () {
    this._destroyed = true;
    if (this._sdk) this._sdk.destroy();
  };
  /** Destroys the instance and frees its wasm memory. */
  qysSdk.prototype.free = function () {
    this.destroy();
    if (this._sdk) this._sdk.free();
    this._sdk = null;
  };
  if (typeof Symbol === 'function' && Symbol.dispose) qysSdk.prototype[Symbol.dispose] = qysSdk.prototype.free;
  return qysSdk;
}

/** The error every call rejects with when the wasm (or its wasm2js fallback) cannot be loaded. */
/** The error every call rejects with when the module cannot be loaded; `before` is the .wasm's
 * URL and why it was refused, when the fallback failed after it. */
export function loadError(url, cause, before) {
  function why(c) { return c && c.message || c; }
  var error = new Error('the SDK could not load ' + url + ' (' + why(cause) + ')' +
    (before ? ' after ' + before[0] + ' (' + why(before[1]) + ')' : '') +
    '; serve it next to the script and allow it in the CSP');
  error.name = 'QysError';
  error.kind = 'network';
  error.code = null;
  return error;
}
