//! OpenSSH-style wildcard patterns (`*`, `?`, and `!` negation in lists).
//!
//! Roles name the targets they reach with patterns such as `web*` or `db-??`; operators already
//! know this syntax from `ssh_config` and `sshd_config`, so we follow its meaning exactly:
//! a list matches when some positive pattern matches and no negated one does.

/// Does `text` match the wildcard `pattern` (`*` = any run, `?` = one character)?
///
/// Iterative with a single backtrack point, so a hostile pattern cannot cause exponential time.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Does `text` match the pattern list? At least one positive pattern must match and no
/// negated (`!pattern`) one may. An empty list matches nothing (fail closed).
pub fn list_matches<S: AsRef<str>>(patterns: &[S], text: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        let pattern = pattern.as_ref();
        if let Some(negated) = pattern.strip_prefix('!') {
            if wildcard_match(negated, text) {
                return false;
            }
        } else if wildcard_match(pattern, text) {
            matched = true;
        }
    }
    matched
}

/// Host names compare case-insensitively, as in DNS and OpenSSH's `Host` matching.
pub fn host_list_matches<S: AsRef<str>>(patterns: &[S], host: &str) -> bool {
    let lowered: Vec<String> = patterns
        .iter()
        .map(|p| p.as_ref().to_ascii_lowercase())
        .collect();
    list_matches(&lowered, &host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("web*", "web01"));
        assert!(wildcard_match("web*", "web"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("db-??", "db-01"));
        assert!(!wildcard_match("db-??", "db-1"));
        assert!(wildcard_match("*.prod.*", "a.prod.example"));
        assert!(!wildcard_match("web", "web01"));
        assert!(!wildcard_match("", "x"));
        assert!(wildcard_match("a*b*c", "axxbyyc"));
        assert!(!wildcard_match("a*b*c", "axxbyy"));
    }

    #[test]
    fn hostile_pattern_is_fast() {
        let text = "a".repeat(10_000);
        assert!(!wildcard_match(&format!("{}b", "*a".repeat(50)), &text));
    }

    #[test]
    fn lists_with_negation() {
        let patterns = ["web*", "!web-secret*"];
        assert!(list_matches(&patterns, "web01"));
        assert!(!list_matches(&patterns, "web-secret1"));
        assert!(!list_matches(&patterns, "db01"));
        assert!(!list_matches::<&str>(&[], "web01"));
        assert!(
            !list_matches(&["!db*"], "web01"),
            "negation alone grants nothing"
        );
    }

    #[test]
    fn hosts_are_case_insensitive() {
        assert!(host_list_matches(&["Web*"], "WEB01"));
        assert!(!list_matches(&["Web*"], "web01"));
    }
}
