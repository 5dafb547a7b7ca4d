//! A small dynamic value, with its own JSON reader and writer: what crosses the JS boundary (as
//! JSON text) and what the proxy receives are read by the same code, so one validation serves
//! both, and the wasm build carries no serde machinery and no float formatting.

/// A JSON-like value. Object members keep their order (and repeated keys, which [`Value::get`]
/// resolves like `JSON.parse`: the last wins); `undefined` reads as [`Value::Null`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null` or `undefined`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// Any number (JS numbers are doubles).
    Number(f64),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object, keys in order.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The member `key` of an object (the last one if the key repeats, as in `JSON.parse`);
    /// `None` for absent keys and non-objects.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A JS-style type name for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }

    /// Compact JSON text.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => write_number(*n, out),
            Value::String(s) => write_json_string(s, out),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            Value::Object(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_string(key, out);
                    out.push(':');
                    value.write_json(out);
                }
                out.push('}');
            }
        }
    }
}

/// Builds an object from `(key, value)` pairs, skipping `Null` values.
pub fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
    object_of(Vec::from(members))
}

/// [`object`]'s one non-generic body.
fn object_of(members: Vec<(&str, Value)>) -> Value {
    let mut out = Vec::with_capacity(members.len());
    for (key, value) in members {
        if !matches!(value, Value::Null) {
            out.push((key.to_owned(), value));
        }
    }
    Value::Object(out)
}

/// The parts, joined (one small loop: `concat` and `join` are generic and larger).
pub fn concat(parts: &[&str]) -> String {
    let mut out = String::new();
    for part in parts {
        out.push_str(part);
    }
    out
}

/// `items` joined by `separator`.
pub fn join(items: &[&str], separator: &str) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(separator);
        }
        out.push_str(item);
    }
    out
}

/// `s` split at its first `byte` (an ASCII separator), which is dropped. (Byte searches instead of
/// `char` patterns: core's char searcher and memchr are 1 KB of wasm these few uses do not need.)
pub fn split_once_byte(s: &str, byte: u8) -> Option<(&str, &str)> {
    let at = s.bytes().position(|b| b == byte)?;
    Some((&s[..at], &s[at + 1..]))
}

/// The pieces of `s` between its `byte`s (an ASCII separator), as `str::split` gives them.
pub fn pieces(s: &str, byte: u8) -> Pieces<'_> {
    Pieces {
        rest: Some(s),
        byte,
    }
}

/// The iterator of [`pieces`].
pub struct Pieces<'a> {
    rest: Option<&'a str>,
    byte: u8,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        let (piece, after) = split_once_byte(rest, self.byte)
            .map_or((rest, None), |(piece, after)| (piece, Some(after)));
        self.rest = after;
        Some(piece)
    }
}

/// Whether `haystack` contains `needle` (non-empty); a plain scan instead of core's two-way
/// searcher, which is large and buys nothing on these short strings.
pub fn has(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The number of characters of `s` (its bytes that do not continue a UTF-8 sequence).
pub fn char_count(s: &str) -> usize {
    s.bytes().filter(|&b| (b as i8) >= -0x40).count()
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Decimal digits of `n` (without `core::fmt`, which the wasm build avoids).
pub fn decimal(mut n: u64) -> String {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits[at..].iter().map(|&d| d as char).collect()
}

/// Integers below 10^19 exactly; other finite numbers approximately (nine decimals, or 17
/// significant digits and an exponent when larger; the protocol carries neither); NaN and
/// infinities as `null`, as `JSON.stringify` does.
fn write_number(n: f64, out: &mut String) {
    if !n.is_finite() {
        out.push_str("null");
        return;
    }
    if n < 0.0 {
        out.push('-');
    }
    let mut n = n.abs();
    if n >= 1e19 {
        let mut exponent = 0u64;
        while n >= 1e17 {
            n /= 10.0;
            exponent += 1;
        }
        out.push_str(&decimal(n.round() as u64));
        out.push('e');
        out.push_str(&decimal(exponent));
        return;
    }
    let mut whole = n as u64;
    let mut frac = ((n - whole as f64) * 1e9).round() as u64;
    if frac >= 1_000_000_000 {
        whole += 1;
        frac = 0;
    }
    out.push_str(&decimal(whole));
    if frac > 0 {
        let mut text = [b'0'; 9];
        for slot in text.iter_mut().rev() {
            *slot = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        out.push('.');
        let end = text.iter().rposition(|&d| d != b'0').map_or(0, |i| i + 1);
        out.extend(text[..end].iter().map(|&d| d as char));
    }
}

/// Copies runs of plain characters at once; escapes `"`, `\\`, controls and U+2028/U+2029.
fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    let bytes = s.as_bytes();
    let (mut run, mut at) = (0, 0);
    while at < bytes.len() {
        let b = bytes[at];
        // U+2028 and U+2029 are E2 80 A8 and E2 80 A9.
        let separator = b == 0xE2
            && bytes.get(at + 1) == Some(&0x80)
            && matches!(bytes.get(at + 2), Some(0xA8 | 0xA9));
        if !(separator || b < 0x20 || b == b'"' || b == b'\\') {
            at += 1;
            continue;
        }
        // SAFETY: `run` and `at` are at ASCII bytes or at the lead byte of U+2028/U+2029.
        out.push_str(unsafe { s.get_unchecked(run..at) });
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                let code = if separator {
                    0x2028 + usize::from(bytes[at + 2] - 0xA8)
                } else {
                    usize::from(b)
                };
                out.push_str("\\u");
                for shift in [12, 8, 4, 0] {
                    out.push(HEX[(code >> shift) & 15] as char);
                }
            }
        }
        at += if separator { 3 } else { 1 };
        run = at;
    }
    // SAFETY: as above.
    out.push_str(unsafe { s.get_unchecked(run..) });
    out.push('"');
}

/// Why JSON text could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset of the problem.
    pub at: usize,
}

/// Deepest nesting accepted, so hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

impl Value {
    /// Reads JSON text (RFC 8259; duplicate keys: the last wins, as in `JSON.parse`).
    pub fn parse(text: &str) -> Result<Value, JsonError> {
        let mut reader = Reader {
            bytes: text.as_bytes(),
            at: 0,
        };
        let value = reader.value(0)?;
        reader.skip_space();
        if reader.at != reader.bytes.len() {
            return Err(reader.error());
        }
        Ok(value)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn error(&self) -> JsonError {
        JsonError { at: self.at }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, literal: &[u8]) -> Result<(), JsonError> {
        if self.bytes[self.at..].starts_with(literal) {
            self.at += literal.len();
            Ok(())
        } else {
            Err(self.error())
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.error());
        }
        self.skip_space();
        match self.peek().ok_or_else(|| self.error())? {
            b'n' => self.eat(b"null").map(|()| Value::Null),
            b't' => self.eat(b"true").map(|()| Value::Bool(true)),
            b'f' => self.eat(b"false").map(|()| Value::Bool(false)),
            b'"' => self.string().map(Value::String),
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                self.skip_space();
                if self.peek() == Some(b']') {
                    self.at += 1;
                    return Ok(Value::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.skip_space();
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Value::Array(items));
                        }
                        _ => return Err(self.error()),
                    }
                }
            }
            b'{' => {
                self.at += 1;
                let mut members: Vec<(String, Value)> = Vec::new();
                self.skip_space();
                if self.peek() == Some(b'}') {
                    self.at += 1;
                    return Ok(Value::Object(members));
                }
                loop {
                    self.skip_space();
                    if self.peek() != Some(b'"') {
                        return Err(self.error());
                    }
                    let key = self.string()?;
                    self.skip_space();
                    self.eat(b":")?;
                    let value = self.value(depth + 1)?;
                    members.push((key, value));
                    self.skip_space();
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Value::Object(members));
                        }
                        _ => return Err(self.error()),
                    }
                }
            }
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(self.error()),
        }
    }

    fn digits(&mut self) -> (u64, i32, usize) {
        // Up to 19 significant digits are kept; the rest only scale the value.
        let (mut value, mut dropped, mut count) = (0u64, 0i32, 0usize);
        while let Some(d @ b'0'..=b'9') = self.peek() {
            if value < 1_000_000_000_000_000_000 {
                value = value * 10 + u64::from(d - b'0');
            } else {
                dropped += 1;
            }
            count += 1;
            self.at += 1;
        }
        (value, dropped, count)
    }

    fn number(&mut self) -> Result<Value, JsonError> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        if self.peek() == Some(b'0') && matches!(self.bytes.get(self.at + 1), Some(b'0'..=b'9')) {
            return Err(self.error());
        }
        let (mut mantissa, mut exponent, count) = self.digits();
        if count == 0 {
            return Err(self.error());
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            let start = self.at;
            while let Some(d @ b'0'..=b'9') = self.peek() {
                if mantissa < 1_000_000_000_000_000_000 {
                    mantissa = mantissa * 10 + u64::from(d - b'0');
                    exponent -= 1;
                }
                self.at += 1;
            }
            if self.at == start {
                return Err(self.error());
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            let sign = match self.peek() {
                Some(b'-') => {
                    self.at += 1;
                    -1
                }
                Some(b'+') => {
                    self.at += 1;
                    1
                }
                _ => 1,
            };
            let (e, _, n) = self.digits();
            if n == 0 {
                return Err(self.error());
            }
            exponent = exponent.saturating_add(sign * e.min(1000) as i32);
        }
        // Exact for integers; other values within a few units in the last place, which is all
        // the protocol needs (`v`, timeouts, ids).
        let magnitude = if mantissa == 0 {
            0.0
        } else {
            mantissa as f64 * 10f64.powi(exponent)
        };
        Ok(Value::Number(if negative { -magnitude } else { magnitude }))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self
            .bytes
            .get(self.at..self.at + 4)
            .ok_or_else(|| self.error())?;
        let mut code = 0;
        for &d in digits {
            code = code * 16 + char::from(d).to_digit(16).ok_or_else(|| self.error())?;
        }
        self.at += 4;
        Ok(code)
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.at += 1; // opening quote
        let mut out = String::new();
        loop {
            let start = self.at;
            while matches!(self.peek(), Some(b) if b != b'"' && b != b'\\' && b >= 0x20) {
                self.at += 1;
            }
            // SAFETY: the input is a &str and the run stops only at ASCII bytes (or its end), so
            // it is whole UTF-8 sequences.
            out.push_str(unsafe { std::str::from_utf8_unchecked(&self.bytes[start..self.at]) });
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    let escape = self.peek().ok_or_else(|| self.error())?;
                    self.at += 1;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let mut code = self.hex4()?;
                            if (0xD800..0xDC00).contains(&code)
                                && self.bytes[self.at..].starts_with(b"\\u")
                            {
                                let mark = self.at;
                                self.at += 2;
                                let low = self.hex4()?;
                                if (0xDC00..0xE000).contains(&low) {
                                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                                } else {
                                    self.at = mark;
                                }
                            }
                            // Lone surrogates become U+FFFD, as a Rust string cannot hold them.
                            out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
                        }
                        _ => return Err(self.error()),
                    }
                }
                _ => return Err(self.error()),
            }
        }
    }
}

/// The flat text `js/bridge.js` makes of a JSON value (what the page hands the wasm instead of
/// JSON text, so the wasm needs no JSON reader): `n`, `t`, `f`; `d` and the number's 64 bits in
/// 16 hex digits; `s<len>:<text>` with the length in UTF-16 units; `a<count>:` and the items;
/// `o<count>:` and for each member `<len>:<key>` and the value.
impl Value {
    /// Reads flat text; `None` when it is not exactly one well-formed value nested at most
    /// [`MAX_DEPTH`] deep.
    pub fn from_flat(text: &str) -> Option<Value> {
        let mut at = 0;
        let value = flat_value(text, &mut at, 0)?;
        (at == text.len()).then_some(value)
    }

    /// The flat text of this value (as `js/bridge.js` writes it; for tests and fuzzing).
    #[doc(hidden)]
    pub fn to_flat(&self) -> String {
        let string = |s: &str| format!("{}:{s}", s.encode_utf16().count());
        match self {
            Value::Null => "n".into(),
            Value::Bool(b) => (if *b { "t" } else { "f" }).into(),
            Value::Number(n) => format!("d{:016x}", n.to_bits()),
            Value::String(s) => format!("s{}", string(s)),
            Value::Array(items) => items
                .iter()
                .fold(format!("a{}:", items.len()), |out, item| {
                    out + &item.to_flat()
                }),
            Value::Object(members) => members
                .iter()
                .fold(format!("o{}:", members.len()), |out, (key, value)| {
                    out + &string(key) + &value.to_flat()
                }),
        }
    }
}

fn flat_value(text: &str, at: &mut usize, depth: usize) -> Option<Value> {
    if depth > MAX_DEPTH {
        return None;
    }
    let bytes = text.as_bytes();
    let tag = *bytes.get(*at)?;
    *at += 1;
    Some(match tag {
        b'n' => Value::Null,
        b't' => Value::Bool(true),
        b'f' => Value::Bool(false),
        b'd' => {
            let mut bits = 0u64;
            for &digit in bytes.get(*at..*at + 16)? {
                bits = bits << 4 | u64::from(char::from(digit).to_digit(16)?);
            }
            *at += 16;
            Value::Number(f64::from_bits(bits))
        }
        b's' => Value::String(flat_string(text, at)?),
        b'a' | b'o' => {
            let count = flat_count(bytes, at)?;
            if tag == b'a' {
                let mut items = Vec::new();
                for _ in 0..count {
                    items.push(flat_value(text, at, depth + 1)?);
                }
                Value::Array(items)
            } else {
                let mut members = Vec::new();
                for _ in 0..count {
                    members.push((flat_string(text, at)?, flat_value(text, at, depth + 1)?));
                }
                Value::Object(members)
            }
        }
        _ => return None,
    })
}

/// Decimal digits up to `:`.
fn flat_count(bytes: &[u8], at: &mut usize) -> Option<usize> {
    let mut count = 0usize;
    loop {
        let b = *bytes.get(*at)?;
        *at += 1;
        match b {
            b':' => return Some(count),
            b'0'..=b'9' => count = count.checked_mul(10)?.checked_add(usize::from(b - b'0'))?,
            _ => return None,
        }
    }
}

/// `<len>:<text>`, `len` in UTF-16 units (four-byte UTF-8 sequences are two units).
fn flat_string(text: &str, at: &mut usize) -> Option<String> {
    let mut units = flat_count(text.as_bytes(), at)?;
    let start = *at;
    while units > 0 {
        let lead = *text.as_bytes().get(*at)?;
        let (len, width) = match lead {
            0..=0x7f => (1, 1),
            0xe0..=0xef => (3, 1),
            0xf0..=0xff => (4, 2),
            _ => (2, 1),
        };
        units = units.checked_sub(width)?;
        *at += len;
    }
    text.get(start..*at).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_json() {
        let text = r#"{"a":[1,2.5,true,null,"x\"\n\u2028"],"b":{"c":"张三"},"a2":-3}"#;
        let v = Value::parse(text).unwrap();
        assert_eq!(
            v.get("b").and_then(|b| b.get("c")).and_then(Value::as_str),
            Some("张三")
        );
        let back: serde_json::Value = serde_json::from_str(&v.to_json()).unwrap();
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(text).unwrap()
        );
        assert_eq!(Value::Number(f64::NAN).to_json(), "null");
        assert_eq!(
            object([("a", Value::Null), ("b", "x".into())]).to_json(),
            r#"{"b":"x"}"#
        );
    }
}
