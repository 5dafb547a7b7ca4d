//! The TypeScript declarations of the SDK's options, callbacks and errors, emitted by
//! wasm-bindgen into the generated `.d.ts` next to the class.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** What went wrong: `code` is the platform's code for `platform` and the HTTP status for `http`. */
export type QysErrorKind = "invalidArgument" | "network" | "timeout" | "http" | "protocol" | "platform";
/** Every rejection of this SDK is an `Error` named `QysError`. */
export interface QysError extends Error {
  name: "QysError";
  kind: QysErrorKind;
  code: number | null;
  /** For `invalidArgument`: the path of the offending argument, e.g. `companyAuthBean.applicant.contact`. */
  param?: string;
}
/**
 * Where the platform's page is shown. `auto` (the default): `miniProgram` inside a WeChat
 * mini-program web-view, `redirect` in iOS WeChat for personal auth that may use the camera
 * (FACE, DEFAULT), `iframe` everywhere else.
 */
export type QysPresentation = "auto" | "iframe" | "redirect" | "miniProgram";
/** Options of `new qysSdk(proxyUrl, options)`. */
export interface QysSdkOptions {
  /** Sent as query parameters with every request to the proxy (numbers must be integers). */
  query?: Record<string, string | number | boolean | null | undefined>;
  /** Abort the proxy request after this many milliseconds (default 15000). */
  timeoutMs?: number;
  /** Log each step to the console. */
  debug?: boolean;
  /** The instance's presentation (default `auto`); a call may override it. */
  presentation?: QysPresentation;
  /** The mini-program page that opens the 契约锁 plugin (default `/pages/qys/qys`, shipped in `miniprogram/`). */
  miniProgramPage?: string;
}
export type ContactType = "MOBILE" | "EMAIL";
/** Callbacks of `personalSign` and `enterpriseSign`. */
export interface SignCallbacks {
  signSuccessCb?: (result: { contractId?: string }) => void;
  authFailCb?: () => void;
  /** This call's presentation, instead of the instance's. */
  presentation?: QysPresentation;
}
/** The authenticated person; `bankNo` and `contact` (the bank-reserved mobile) only after bank-card auth. */
export interface PersonalUserInfo { username?: string; mobile?: string; cardNo?: string; bankNo?: string; contact?: string }
/** The authenticated company's details. */
export interface CompanyInfo { name?: string; registerNo?: string; legalPerson?: string }
export interface AuthCallbacks<Info> {
  authSuccessCb?: (userInfo: Info) => void;
  authFailCb?: () => void;
  /** This call's presentation, instead of the instance's. */
  presentation?: QysPresentation;
}
/** Callbacks of `resume`: the one that fits the returning flow fires once. */
export interface ResumeCallbacks {
  signSuccessCb?: (result: { contractId?: string }) => void;
  authSuccessCb?: (userInfo: PersonalUserInfo | CompanyInfo) => void;
  authFailCb?: () => void;
}
/** What `resume` fired. */
export interface QysResumed {
  action: "personalSign" | "enterpriseSign" | "personalAuth" | "enterpriseAuth";
  event: "signSuccess" | "authSuccess" | "authFail";
  data: { contractId?: string } | PersonalUserInfo | CompanyInfo | Record<string, never>;
}
/** Parameters of `personalAuth`. */
export interface PersonalAuthParams {
  mode?: "DEFAULT" | "FACE" | "BANK";
  contact: string;
  contactType?: ContactType;
  username?: string;
  idCardNo?: string;
  bankNo?: string;
  bankMobile?: string;
  manual?: boolean;
  callbackUrl?: string;
  modifyFields?: Array<"USERNAME" | "IDCARDNO" | "BANKNO" | "BANKMOBILE">;
}
/** Parameters of `enterpriseAuth`. */
export interface EnterpriseAuthParams {
  companyName: string;
  companyAuthBean: {
    companyName?: string;
    applicant: { name?: string; contact: string; contactType?: ContactType };
    registerNo?: string;
    legalPerson?: string;
    callbackUrl?: string;
    closeButton?: boolean;
    modifyFields?: Array<"corpName" | "registerNo" | "legalPerson">;
  };
}
"#;
