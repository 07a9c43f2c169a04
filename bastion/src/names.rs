//! Names and untrusted text: what a target name may be, and how text from the network is
//! shown in messages and logs.
//!
//! These are leaf helpers that configuration, login parsing, the relay and the audit records
//! all use; they live here, depending on nothing, so that none of those modules has to
//! import another for them (they once formed the cycle admin -> pump -> login -> config ->
//! admin).

/// Longest target name; names go into host certificate checks and audit records.
pub const MAX_TARGET_NAME: usize = 253;

/// Is `name` a plausible target (host) name: letters, digits, `.`, `-`, `_`?
pub fn valid_target_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TARGET_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// A bounded, escaped rendering of untrusted text for messages and logs.
pub fn printable(text: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = text
        .chars()
        .take(MAX)
        .flat_map(char::escape_default)
        .collect();
    if text.chars().count() > MAX {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_are_host_like_and_bounded() {
        assert!(valid_target_name("web-01.example_net"));
        assert!(!valid_target_name(""));
        assert!(!valid_target_name("a/b"));
        assert!(!valid_target_name(&"a".repeat(MAX_TARGET_NAME + 1)));
    }
}
