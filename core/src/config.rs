//! Loading TOML configuration with errors that name the file, the line and the key.
//!
//! Every config struct in the project derives `Deserialize` with `deny_unknown_fields`, so a
//! misspelt key is an error instead of a silently ignored setting. This module turns serde's
//! errors into `ca.toml:7: key roles[1].max_ttl: invalid duration "banana" ...`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A configuration file could not be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file we tried to read.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file was read but its content is wrong.
    #[error("{0}")]
    Invalid(Box<InvalidConfig>),
}

/// Where and why a configuration file is wrong.
#[derive(Debug)]
pub struct InvalidConfig {
    /// The file (or other origin, such as `<embedded defaults>`).
    pub origin: String,
    /// 1-based line number, when known.
    pub line: Option<usize>,
    /// Dotted path of the offending key, e.g. `roles[1].max_ttl`, when known.
    pub key: Option<String>,
    /// What is wrong, in one line.
    pub message: String,
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ConfigError {
    /// An error found after parsing (cross-field validation), tied to a key and, if it can be
    /// found in the source text, its line.
    pub fn invalid(origin: &str, source_text: &str, key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid(Box::new(InvalidConfig {
            origin: origin.to_string(),
            line: line_of_key(source_text, key),
            key: Some(key.to_string()),
            message: message.into(),
        }))
    }
}

/// Reads and parses a TOML file into `T`.
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_toml(&text, &path.display().to_string())
}

/// Parses TOML text into `T`; `origin` names the source in errors.
pub fn parse_toml<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, ConfigError> {
    let deserializer = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let key = err.path().to_string();
        let inner = err.into_inner();
        let line = inner
            .span()
            .map(|span| line_at(text, span.start))
            .or_else(|| line_of_key(text, &key));
        let key = (key != ".").then_some(key);
        ConfigError::Invalid(Box::new(InvalidConfig {
            origin: origin.to_string(),
            line,
            key,
            message: one_line(inner.message()),
        }))
    })
}

fn line_at(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Best-effort line of a dotted key path such as `roles[1].max_ttl`: the line where its last
/// component is assigned, within the n-th `[[roles]]` table when the path says so.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let mut components = key.split('.').filter(|c| !c.is_empty()).peekable();
    let mut search_from = 0usize;
    let mut last_name = None;
    while let Some(component) = components.next() {
        let (name, index) = match component.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (component, None),
        };
        if components.peek().is_none() && index.is_none() {
            last_name = Some(name);
            break;
        }
        let header = format!("[[{name}]]");
        let occurrence = index.unwrap_or(0);
        let lines: Vec<&str> = text.lines().collect();
        let found = lines
            .iter()
            .enumerate()
            .skip(search_from)
            .filter(|(_, l)| l.trim() == header || l.trim() == format!("[{name}]"))
            .nth(occurrence)?;
        search_from = found.0 + 1;
    }
    let name = last_name?;
    text.lines()
        .enumerate()
        .skip(search_from)
        .find(|(_, l)| {
            let trimmed = l.trim_start();
            trimmed
                .strip_prefix(name)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|(i, _)| i + 1)
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::HumanDuration;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        #[serde(default)]
        roles: Vec<Role>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Role {
        name: String,
        ttl: HumanDuration,
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = "name = \"x\"\n\n[[roles]]\nname = \"a\"\nttl = \"1h\"\ncolour = \"red\"\n";
        let err = parse_toml::<Sample>(text, "ca.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("ca.toml:6:"), "{err}");
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn bad_value_names_the_key_path() {
        let text = "name = \"x\"\n[[roles]]\nname = \"a\"\nttl = \"1h\"\n[[roles]]\nname = \"b\"\nttl = \"banana\"\n";
        let err = parse_toml::<Sample>(text, "policy.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("policy.toml:7:"), "{err}");
        assert!(err.contains("roles[1].ttl"), "{err}");
        assert!(err.contains("banana"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn syntax_error_has_a_line() {
        let err = parse_toml::<Sample>("name = \"x\"\nroles = [\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("f.toml:"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn validation_errors_find_the_key_line() {
        let text = "name = \"x\"\n[[roles]]\nname = \"a\"\nttl = \"1h\"\n[[roles]]\nname = \"b\"\nttl = \"2h\"\n";
        let err = ConfigError::invalid("p.toml", text, "roles[1].ttl", "too long").to_string();
        assert_eq!(err, "p.toml:7: key roles[1].ttl: too long");
    }
}
