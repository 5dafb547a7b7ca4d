// Types of the ES module entry, dist/qys-sdk.mjs (built from js/index.js); copied to dist/ by
// scripts/build.sh next to qys_sdk_wasm.d.ts, which wasm-bindgen generates from the Rust code.
import { QysSdk } from './qys_sdk_wasm.js';
export type {
  QysError, QysErrorKind, QysSdkOptions, QysPresentation, ContactType, SignCallbacks, PersonalUserInfo,
  CompanyInfo, AuthCallbacks, PersonalAuthParams, EnterpriseAuthParams, ResumeCallbacks, QysResumed,
} from './qys_sdk_wasm.js';
/** The SDK; the wasm is loaded on the first call. */
export { QysSdk, QysSdk as qysSdk };
export default QysSdk;
