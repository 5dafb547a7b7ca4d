//! Minimal HTML helpers for the server-rendered pages.

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Serialises a value as JSON that is safe inside an inline `<script>`.
pub fn script_json(value: &serde_json::Value) -> String {
    value
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// A complete page with the sandbox's plain style.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=zh-CN><head><meta charset=utf-8>\
<meta name=viewport content=\"width=device-width,initial-scale=1\">\
<title>{}</title><style>body{{font:16px system-ui,sans-serif;margin:1.5em}}\
label{{display:block;margin:.5em 0}}input[readonly]{{background:#eee}}\
button{{font-size:1em;margin:.5em .5em 0 0;padding:.4em 1em}}</style></head><body>{}</body></html>",
        escape(title),
        body
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup_and_script_breakers() {
        assert_eq!(super::escape("<a href=\"x\">'&'"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;");
        let v = serde_json::json!({"s": "</script><!--"});
        assert!(!super::script_json(&v).contains("</script"));
    }
}
