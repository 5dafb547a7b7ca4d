//! Masking of personal data in log lines.

use std::fmt;

/// Displays a contact with its middle hidden: `13712341234` → `137****1234`,
/// `alice@example.com` → `a***@example.com`.
pub struct Masked<'a>(pub &'a str);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if let Some((local, domain)) = s.split_once('@') {
            let first = local.chars().next().map(String::from).unwrap_or_default();
            return write!(f, "{first}***@{domain}");
        }
        let chars: Vec<char> = s.chars().collect();
        if chars.len() >= 7 {
            let head: String = chars[..3].iter().collect();
            let tail: String = chars[chars.len() - 4..].iter().collect();
            write!(f, "{head}****{tail}")
        } else {
            f.write_str("****")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Masked;

    #[test]
    fn masks_mobile_email_and_short_values() {
        assert_eq!(Masked("13712341234").to_string(), "137****1234");
        assert_eq!(Masked("alice@example.com").to_string(), "a***@example.com");
        assert_eq!(Masked("12345").to_string(), "****");
    }
}
