//! Helpers shared by the fuzz targets: number comparison, JSON nesting, and generators of
//! near-valid values (dictionaries of valid and almost-valid field values, with type confusion,
//! padding, repetition and repeated keys) so that the parsers' deep paths are reached.

use arbitrary::{Arbitrary, Result, Unstructured};
use qys_sdk_wasm::value::Value;

/// `a` and `b` are equal, or both finite and within `rel` (relative) or `abs` (absolute).
pub fn close(a: f64, b: f64, rel: f64, abs: f64) -> bool {
    a == b || (a.is_finite() && b.is_finite() && (a - b).abs() <= abs.max(rel * a.abs().max(b.abs())))
}

/// Deepest nesting of `[` and `{` outside strings (for any text; meaningful for JSON).
pub fn nesting(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// True once in `n` (and false when the input is used up, unlike `Unstructured::ratio`, so that
/// the rare branches stay rare and short inputs build the plain, valid shapes).
pub fn one_in(u: &mut Unstructured<'_>, n: u8) -> Result<bool> {
    Ok(u.int_in_range(1..=n)? == n)
}

/// Unicode and ASCII white space, control characters and look-alikes to pad or append.
const ODD: &[&str] = &[" ", "\t", "\n", "\u{3000}", "\u{a0}", "\u{0}", "\u{7f}", "\u{85}", "\u{2028}", "\u{feff}", "#", "@", ".", "/", "%", "\"", "\\", "张", "😀"];

/// A string near `candidates`: one of them as is (most often), padded, extended, cut, repeated,
/// case-flipped, or arbitrary text.
pub fn string_like(u: &mut Unstructured<'_>, candidates: &[&str]) -> Result<String> {
    let base = if candidates.is_empty() { String::new() } else { (*u.choose(candidates)?).to_owned() };
    Ok(match u.int_in_range(0u8..=15)? {
        0..=6 => base,
        7 => [*u.choose(ODD)?, &base, *u.choose(ODD)?].concat(),
        8 => [&base, *u.choose(ODD)?].concat(),
        9 => {
            let cut = u.int_in_range(0..=base.chars().count())?;
            base.chars().take(cut).collect()
        }
        10 => base.repeat(u.int_in_range(2..=(8192 / (base.len() + 1)).max(2))?),
        11 => base.chars().map(|c| if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }).collect(),
        12 => {
            let at = u.int_in_range(0..=base.chars().count())?;
            let odd = *u.choose(ODD)?;
            base.chars().take(at).collect::<String>() + odd + &base.chars().skip(at).collect::<String>()
        }
        _ => String::arbitrary(u)?,
    })
}

/// A number near `candidates` (or a special one).
pub fn number_like(u: &mut Unstructured<'_>, candidates: &[f64]) -> Result<f64> {
    const SPECIAL: &[f64] = &[0.0, -0.0, 1.0, -1.0, 0.5, 1e-9, 9_007_199_254_740_991.0, 9_007_199_254_740_992.0, 1e19, 1e300, f64::MAX, f64::MIN_POSITIVE, f64::INFINITY, f64::NEG_INFINITY, f64::NAN];
    Ok(match u.int_in_range(0u8..=5)? {
        0..=2 if !candidates.is_empty() => *u.choose(candidates)?,
        3 => *u.choose(SPECIAL)?,
        4 if !candidates.is_empty() => *u.choose(candidates)? + f64::from(u.int_in_range(-2i8..=2)?) * 0.5,
        _ => f64::arbitrary(u)?,
    })
}

/// Any JSON-like value, at most `depth` containers deep.
pub fn any_value(u: &mut Unstructured<'_>, depth: usize) -> Result<Value> {
    let top = if depth == 0 { 3 } else { 5 };
    Ok(match u.int_in_range(0u8..=top)? {
        0 => Value::Null,
        1 => Value::Bool(bool::arbitrary(u)?),
        2 => Value::Number(number_like(u, &[])?),
        3 => Value::String(String::arbitrary(u)?),
        4 => {
            let n = u.int_in_range(0..=4)?;
            Value::Array((0..n).map(|_| any_value(u, depth - 1)).collect::<Result<_>>()?)
        }
        _ => {
            let n = u.int_in_range(0..=4)?;
            Value::Object((0..n).map(|_| Ok((String::arbitrary(u)?, any_value(u, depth - 1)?))).collect::<Result<_>>()?)
        }
    })
}

/// A member value: absent (`None`), `null`, a string near `candidates`, or another type.
pub fn field(u: &mut Unstructured<'_>, candidates: &[&str]) -> Result<Option<Value>> {
    Ok(match u.int_in_range(0u8..=15)? {
        11 => None,
        12 => Some(Value::Null),
        13 => Some(Value::Bool(bool::arbitrary(u)?)),
        14 => Some(Value::Number(number_like(u, &[])?)),
        15 => Some(any_value(u, 2)?),
        _ => Some(Value::String(string_like(u, candidates)?)),
    })
}

/// A boolean member: mostly a boolean, sometimes absent, `null`, a string or another value.
pub fn bool_field(u: &mut Unstructured<'_>) -> Result<Option<Value>> {
    Ok(match u.int_in_range(0u8..=7)? {
        4 => None,
        5 => Some(Value::Null),
        6 => Some(Value::String(string_like(u, &["true", "false"])?)),
        7 => Some(any_value(u, 1)?),
        _ => Some(Value::Bool(bool::arbitrary(u)?)),
    })
}

/// A numeric member: mostly a number near `numbers`, sometimes a string near `strings`.
pub fn number_field(u: &mut Unstructured<'_>, numbers: &[f64], strings: &[&str]) -> Result<Option<Value>> {
    Ok(match u.int_in_range(0u8..=9)? {
        4 => None,
        5 => Some(Value::Null),
        6..=8 => Some(Value::String(string_like(u, strings)?)),
        9 => Some(any_value(u, 1)?),
        _ => Some(Value::Number(number_like(u, numbers)?)),
    })
}

/// A list member: mostly an array of strings near `candidates`.
pub fn list_field(u: &mut Unstructured<'_>, candidates: &[&str]) -> Result<Option<Value>> {
    Ok(match u.int_in_range(0u8..=7)? {
        5 => None,
        6 => Some(Value::Null),
        7 => field(u, candidates)?,
        _ => {
            let n = u.int_in_range(0..=5)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(if one_in(u, 8)? { any_value(u, 1)? } else { Value::String(string_like(u, candidates)?) });
            }
            Some(Value::Array(items))
        }
    })
}

/// An object of the present `members`, in a shuffled order, sometimes with a repeated key
/// (whose last value counts) or an unknown one.
pub fn object(u: &mut Unstructured<'_>, members: Vec<(&str, Option<Value>)>) -> Result<Value> {
    let mut out: Vec<(String, Value)> =
        members.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_owned(), v))).collect();
    if !out.is_empty() && one_in(u, 6)? {
        let i = u.choose_index(out.len())?;
        let repeated = (out[i].0.clone(), any_value(u, 1)?);
        let at = u.int_in_range(0..=out.len())?;
        out.insert(at, repeated);
    }
    if one_in(u, 8)? {
        out.push((string_like(u, &["extra", "__proto__", ""])?, any_value(u, 1)?));
    }
    for i in (1..out.len()).rev() {
        let j = u.int_in_range(0..=i)?;
        out.swap(i, j);
    }
    Ok(Value::Object(out))
}

/// Either a member object built by `build`, or (rarely) some other value.
pub fn object_field(
    u: &mut Unstructured<'_>,
    build: impl FnOnce(&mut Unstructured<'_>) -> Result<Value>,
) -> Result<Option<Value>> {
    Ok(match u.int_in_range(0u8..=11)? {
        9 => None,
        10 => Some(Value::Null),
        11 => Some(any_value(u, 2)?),
        _ => Some(build(u)?),
    })
}
