//! Constructor options: `new qysSdk(proxyUrl, { query, timeoutMs, debug, presentation, miniProgramPage })`.

use crate::error::QysError;
use crate::presentation::{is_mini_program_page, Presentation, DEFAULT_MINI_PROGRAM_PAGE};
use crate::value::{concat, decimal, Value};

/// Default request timeout.
pub const DEFAULT_TIMEOUT_MS: u32 = 15_000;
/// Longest accepted `timeoutMs` (ten minutes; also in the error message).
pub const MAX_TIMEOUT_MS: u32 = 600_000;

/// Validated options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Extra query parameters for every proxy request, in order.
    pub query: Vec<(String, String)>,
    /// Abort the proxy request after this many milliseconds.
    pub timeout_ms: u32,
    /// Log each step to the console.
    pub debug: bool,
    /// The instance's presentation; `None` is `auto`.
    pub presentation: Option<Presentation>,
    /// The mini-program page that opens the 契约锁 plugin.
    pub mini_program_page: String,
}

/// Reads a `presentation` option (`param` names it in errors): `auto` is `None`.
pub fn parse_presentation(value: &Value, param: &str) -> Result<Option<Presentation>, QysError> {
    match value.as_str() {
        Some("auto") => Ok(None),
        Some(name) if Presentation::from_name(name).is_some() => Ok(Presentation::from_name(name)),
        _ => Err(QysError::invalid_at(
            param,
            &[" must be 'auto', 'iframe', 'redirect' or 'miniProgram'"],
        )),
    }
}

impl Options {
    /// Validates the options object (`undefined`/`null` means all defaults).
    pub fn parse(value: &Value) -> Result<Self, QysError> {
        let mut options = Options {
            query: Vec::new(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            debug: false,
            presentation: None,
            mini_program_page: DEFAULT_MINI_PROGRAM_PAGE.into(),
        };
        let members = match value {
            Value::Null => return Ok(options),
            Value::Object(members) => members,
            other => {
                return Err(QysError::invalid_at(
                    "options",
                    &[" must be an object, not ", other.type_name()],
                ))
            }
        };
        for (key, member) in members {
            match (key.as_str(), member) {
                (_, Value::Null) => {}
                ("query", Value::Object(pairs)) => {
                    for (name, v) in pairs {
                        let text = match v {
                            Value::String(s) => s.clone(),
                            Value::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => {
                                let digits = decimal(n.abs() as u64);
                                if *n < 0.0 {
                                    concat(&["-", &digits])
                                } else {
                                    digits
                                }
                            }
                            Value::Bool(b) => String::from(if *b { "true" } else { "false" }),
                            Value::Null => continue,
                            other => {
                                return Err(QysError::invalid_at(
                                    &concat(&["query.", name]),
                                    &[
                                        " must be a string, an integer or a boolean, not ",
                                        other.type_name(),
                                    ],
                                ))
                            }
                        };
                        options.query.push((name.clone(), text));
                    }
                }
                ("query", other) => {
                    return Err(QysError::invalid_at(
                        "query",
                        &[" must be an object, not ", other.type_name()],
                    ))
                }
                ("timeoutMs", Value::Number(n))
                    if n.fract() == 0.0 && *n >= 1.0 && *n <= f64::from(MAX_TIMEOUT_MS) =>
                {
                    options.timeout_ms = *n as u32;
                }
                ("timeoutMs", _) => {
                    return Err(QysError::invalid_at(
                        "timeoutMs",
                        &[" must be a whole number of milliseconds from 1 to 600000"],
                    ))
                }
                ("debug", Value::Bool(b)) => options.debug = *b,
                ("debug", other) => {
                    return Err(QysError::invalid_at(
                        "debug",
                        &[" must be a boolean, not ", other.type_name()],
                    ))
                }
                ("presentation", v) => {
                    options.presentation = parse_presentation(v, "presentation")?
                }
                ("miniProgramPage", Value::String(page)) if is_mini_program_page(page) => {
                    options.mini_program_page = page.clone();
                }
                ("miniProgramPage", _) => {
                    return Err(QysError::invalid_at(
                        "miniProgramPage",
                        &[" must be an absolute mini-program page path like '/pages/qys/qys'"],
                    ))
                }
                _ => {}
            }
        }
        Ok(options)
    }
}
