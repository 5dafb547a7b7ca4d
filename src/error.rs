//! The one error type of the SDK: `kind`, `code`, `message` (and `param` for bad arguments).

use std::fmt;

/// What went wrong, as a stable string for `error.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// An argument failed validation; nothing was sent.
    InvalidArgument,
    /// The proxy could not be reached (offline, DNS, CORS refusal, connection reset).
    Network,
    /// The proxy did not answer within `timeoutMs`.
    Timeout,
    /// The proxy answered a non-2xx HTTP status; `code` is the status.
    Http,
    /// The proxy's answer or a message did not fit protocol v1.
    Protocol,
    /// The platform refused; `code` is the platform's code (e.g. 1110, 1605).
    Platform,
}

impl ErrorKind {
    /// The JS-facing name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalidArgument",
            ErrorKind::Network => "network",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Http => "http",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Platform => "platform",
        }
    }
}

/// An SDK error. In JS it becomes an `Error` named `QysError` with these fields. Boxed: a
/// `Result<_, QysError>` stays one pointer wide, so the many `?` of validation move little.
#[derive(Debug, Clone, PartialEq)]
pub struct QysError(Box<ErrorFields>);

/// What a [`QysError`] says (its fields, reached through `Deref`).
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorFields {
    /// Category.
    pub kind: ErrorKind,
    /// Platform code (`platform`), HTTP status (`http`), or `None`.
    pub code: Option<i64>,
    /// The offending argument's path for `invalidArgument`, e.g. `companyAuthBean.applicant.contact`.
    pub param: Option<String>,
    /// What happened and what to do about it.
    pub message: String,
}

impl QysError {
    fn of(kind: ErrorKind, code: Option<i64>, param: Option<String>, message: String) -> Self {
        Self(Box::new(ErrorFields {
            kind,
            code,
            param,
            message,
        }))
    }

    /// The message, taken out of the error.
    pub fn into_message(self) -> String {
        self.0.message
    }

    /// A bad argument at `param`.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::of(
            ErrorKind::InvalidArgument,
            None,
            Some(param.into()),
            message.into(),
        )
    }

    /// A bad argument at `param`; the message is `param` followed by `what`'s parts. (Joining
    /// parts instead of `format!` keeps the wasm small.)
    pub fn invalid_at(param: &str, what: &[&str]) -> Self {
        let mut message = String::from(param);
        what.iter().for_each(|part| message.push_str(part));
        Self::invalid(param, message)
    }

    /// An error of `kind` without a code.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::of(kind, None, None, message.into())
    }

    /// An error of `kind` with a code.
    pub fn with_code(kind: ErrorKind, code: i64, message: impl Into<String>) -> Self {
        Self::of(kind, Some(code), None, message.into())
    }
}

impl std::ops::Deref for QysError {
    type Target = ErrorFields;

    fn deref(&self) -> &ErrorFields {
        &self.0
    }
}

impl fmt::Display for QysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for QysError {}
