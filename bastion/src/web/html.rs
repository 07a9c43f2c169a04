//! HTML out of untrusted text: everything a recording, a person or a target put in a page
//! goes through [`esc`] (text and attribute values alike), so a `<script>` typed in a
//! session is shown, never run. The page frame is [`page`]; it links the console's own
//! stylesheet and scripts, and carries no inline script (the CSP forbids it anyway).

use std::fmt::Write as _;

/// `text` escaped for HTML text and double-quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Controls other than newline and tab are shown as their escape.
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// `text` escaped for a URL query value.
pub fn query_value(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Who is looking, for the frame's header (and the sign-out form's CSRF token).
pub struct Viewer<'a> {
    /// The person.
    pub person: &'a str,
    /// Their CSRF token.
    pub csrf: &'a str,
}

/// A whole page: `title`, the header (with sign-out when someone is signed in), `body`
/// (already HTML), and the player's files when `player` is set.
pub fn page(title: &str, viewer: Option<&Viewer<'_>>, body: &str, player: bool) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · jitssh</title><link rel=\"stylesheet\" href=\"/assets/console.css\">",
        esc(title)
    );
    if player {
        out.push_str("<link rel=\"stylesheet\" href=\"/assets/asciinema-player.css\">");
    }
    out.push_str(
        "</head><body><header><a href=\"/sessions\">Sessions</a><a href=\"/search\">Search</a>",
    );
    if let Some(v) = viewer {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/signout\"><span>{}</span> \
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Sign out</button></form>",
            esc(v.person),
            esc(v.csrf)
        );
    }
    let _ = write!(out, "</header><main><h1>{}</h1>{body}</main>", esc(title));
    if player {
        out.push_str("<script src=\"/assets/asciinema-player.min.js\"></script>");
    }
    out.push_str("<script src=\"/assets/console.js\"></script></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_controls_are_inert() {
        assert_eq!(
            esc("<script>alert('x')</script>&\"\u{1b}"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;\\u{1b}"
        );
        assert_eq!(query_value("a b/ü"), "a%20b%2F%C3%BC");
    }
}
