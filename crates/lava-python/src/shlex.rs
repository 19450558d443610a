//! Python's `shlex.quote` and `shlex.split` (POSIX mode, no comments), which LAVA uses to
//! build device command lines and to turn them back into an argv.
//!
//! `shlex.split` knows three kinds of characters besides word characters: whitespace
//! (space, tab, CR, LF), the quotes `'` and `"`, and the escape `\`. Inside `'...'` nothing
//! is special; inside `"..."` a backslash escapes only `"` and `\` (it stays in the word
//! before anything else); outside quotes a backslash takes the next character as it is.
//! There is no expansion of any kind, and an empty quoted word (`''`) is a word.

use crate::repr::str_repr;

/// Why [`shlex_split`] refused a string: Python's `ValueError` messages, naming the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShlexError {
    /// A `'` or `"` is never closed.
    #[error("No closing quotation in {}", str_repr(.input))]
    NoClosingQuotation {
        /// The string being split.
        input: String,
    },
    /// The string ends with a `\` (outside quotes or inside `"..."`).
    #[error("No escaped character in {}", str_repr(.input))]
    NoEscapedCharacter {
        /// The string being split.
        input: String,
    },
}

impl ShlexError {
    /// Python's own message, without the input (`No closing quotation`), for callers whose
    /// error names the input already.
    pub fn python_message(&self) -> &'static str {
        match self {
            ShlexError::NoClosingQuotation { .. } => "No closing quotation",
            ShlexError::NoEscapedCharacter { .. } => "No escaped character",
        }
    }
}

/// Python's `shlex.quote(s)`: `''` for the empty string, `s` itself when it is made only
/// of `[A-Za-z0-9_@%+=:,./-]`, otherwise [`single_quote`]`(s)`.
pub fn shlex_quote(s: &str) -> String {
    if s.is_empty() {
        return "''".to_string();
    }
    let safe = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if safe { s.to_string() } else { single_quote(s) }
}

/// `s` in single quotes whatever it holds, each `'` written as `'"'"'` (the form
/// `shlex.quote` uses for unsafe text).
pub fn single_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

/// Python's `shlex.split(s)` (POSIX mode, comments not recognised).
pub fn shlex_split(s: &str) -> Result<Vec<String>, ShlexError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // Whether a word has begun: a quoted empty string is a word, whitespace is not.
    let mut in_word = false;
    let mut chars = s.chars();
    let no_closing = || ShlexError::NoClosingQuotation {
        input: s.to_string(),
    };
    let no_escaped = || ShlexError::NoEscapedCharacter {
        input: s.to_string(),
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next().ok_or_else(no_closing)? {
                        '\'' => break,
                        inner => word.push(inner),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next().ok_or_else(no_closing)? {
                        '"' => break,
                        '\\' => match chars.next().ok_or_else(no_escaped)? {
                            escaped @ ('"' | '\\') => word.push(escaped),
                            other => {
                                word.push('\\');
                                word.push(other);
                            }
                        },
                        inner => word.push(inner),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next().ok_or_else(no_escaped)?);
            }
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_like_python() {
        assert_eq!(shlex_quote(""), "''");
        assert_eq!(shlex_quote("abc/d-e.f:1,2=3@%+_"), "abc/d-e.f:1,2=3@%+_");
        assert_eq!(shlex_quote("a b"), "'a b'");
        assert_eq!(shlex_quote("it's"), "'it'\"'\"'s'");
        assert_eq!(shlex_quote("é"), "'é'");
        assert_eq!(single_quote("eth0"), "'eth0'");
        assert_eq!(single_quote("$(reboot)"), "'$(reboot)'");
    }

    #[test]
    fn split_like_python() {
        assert_eq!(
            shlex_split("telnet localhost 7001").unwrap(),
            ["telnet", "localhost", "7001"]
        );
        assert_eq!(
            shlex_split(r#"a 'b c' "d \"e\"" f\ g"#).unwrap(),
            ["a", "b c", "d \"e\"", "f g"]
        );
        assert_eq!(
            shlex_split(r#""a\$b\\" 'x\y'"#).unwrap(),
            [r"a\$b\", r"x\y"]
        );
        assert_eq!(shlex_split("'' x\"\"y").unwrap(), ["", "xy"]);
        assert_eq!(shlex_split(" \t\n").unwrap(), Vec::<String>::new());
        assert_eq!(shlex_split("a#b # c").unwrap(), ["a#b", "#", "c"]);
        assert_eq!(shlex_split("a\u{a0}b").unwrap(), ["a\u{a0}b"]);
    }

    #[test]
    fn split_errors_name_the_input() {
        let open = shlex_split("telnet 'open").unwrap_err();
        assert_eq!(
            open.to_string(),
            r#"No closing quotation in "telnet 'open""#
        );
        assert!(matches!(
            shlex_split(r#""a\"#),
            Err(ShlexError::NoEscapedCharacter { .. })
        ));
        assert!(matches!(
            shlex_split(r"a\"),
            Err(ShlexError::NoEscapedCharacter { .. })
        ));
    }
}
