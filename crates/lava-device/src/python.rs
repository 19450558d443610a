//! Python's text forms of template values: `str()`, `repr()`, float printing, `shlex.quote`
//! and PyYAML's one-line double-quoted dump.
//!
//! Jinja2 turns every value it prints into text with Python's `str()`, so a list prints as
//! `['a', 'b']`, `None` as `None` and `True` as `True`; minijinja's own forms differ. The
//! functions here reproduce Python's forms for the value kinds templates can build.

use minijinja::Value;
use minijinja::value::ValueKind;
use std::fmt::Write;

/// Python's `str(value)` for a template value (an undefined value gives the empty string).
pub fn py_str(value: &Value) -> String {
    let mut out = String::new();
    write_str(&mut out, value);
    out
}

/// Append Python's `str(value)` to `out`.
pub fn write_str(out: &mut String, value: &Value) {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::String => out.push_str(value.as_str().unwrap_or_default()),
        _ => write_repr(out, value),
    }
}

/// Python's `repr(value)` for a template value.
pub fn py_repr(value: &Value) -> String {
    let mut out = String::new();
    write_repr(&mut out, value);
    out
}

/// Append Python's `repr(value)` to `out`.
pub fn write_repr(out: &mut String, value: &Value) {
    match value.kind() {
        // Jinja2's Undefined has an empty str() but its repr() is "Undefined": a template
        // like `{{ [{'id': missing}] }}` prints `[{'id': Undefined}]`.
        ValueKind::Undefined => out.push_str("Undefined"),
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => write_number(out, value),
        ValueKind::String => write_str_repr(out, value.as_str().unwrap_or_default()),
        ValueKind::Bytes => {
            out.push('b');
            let text: String = value
                .as_bytes()
                .unwrap_or_default()
                .iter()
                .map(|&b| b as char)
                .collect();
            write_str_repr(out, &text);
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let tuple = value.is_tuple();
            out.push(if tuple { '(' } else { '[' });
            let mut count = 0;
            if let Ok(items) = value.try_iter() {
                for (i, item) in items.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_repr(out, &item);
                    count += 1;
                }
            }
            if tuple && count == 1 {
                out.push(',');
            }
            out.push(if tuple { ')' } else { ']' });
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(keys) = value.try_iter() {
                for (i, key) in keys.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_repr(out, &key);
                    out.push_str(": ");
                    let item = value.get_item(&key).unwrap_or_default();
                    write_repr(out, &item);
                }
            }
            out.push('}');
        }
        // Functions, macros and other objects: their own description is all there is.
        ValueKind::Plain | ValueKind::Invalid => {
            let _ = write!(out, "{value}");
        }
        // ValueKind is non-exhaustive.
        _ => {
            let _ = write!(out, "{value}");
        }
    }
}

fn write_number(out: &mut String, value: &Value) {
    if value.is_integer() {
        let _ = write!(out, "{value}");
    } else if let Ok(f) = f64::try_from(value.clone()) {
        write_float(out, f);
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Python's `repr(float)`: the shortest round-tripping digits, in fixed notation for
/// exponents -4..16 (always with a fractional part) and scientific notation otherwise.
pub fn py_float(f: f64) -> String {
    let mut out = String::new();
    write_float(&mut out, f);
    out
}

fn write_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("nan");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "inf" } else { "-inf" });
        return;
    }
    if f == 0.0 {
        out.push_str(if f.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    // `{:e}` gives the shortest round-trip digits: "1.5e-7", "-2e20".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let fixed = format!("{f}");
        out.push_str(&fixed);
        if !fixed.contains('.') {
            out.push_str(".0");
        }
    } else {
        out.push_str(mantissa);
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
}

/// Python's `repr(str)`.
pub fn write_str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !is_printable(c) => {
                let n = c as u32;
                let _ = if n <= 0xff {
                    write!(out, "\\x{n:02x}")
                } else if n <= 0xffff {
                    write!(out, "\\u{n:04x}")
                } else {
                    write!(out, "\\U{n:08x}")
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// An approximation of Python's `str.isprintable` for one character: control characters,
/// separators other than the ASCII space, and format characters are not printable.
fn is_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() {
        return false;
    }
    !matches!(
        c,
        '\u{a0}'
            | '\u{ad}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200f}'
            | '\u{2028}'..='\u{202f}'
            | '\u{205f}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{3000}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{e000}'..='\u{f8ff}'
    )
}

/// Python's `shlex.quote`: the empty string becomes `''`; a string made only of
/// `[A-Za-z0-9_@%+=:,./-]` is returned as is; anything else is put in single quotes with
/// each `'` written as `'"'"'`.
pub fn shlex_quote(s: &str) -> String {
    if s.is_empty() {
        return "''".to_string();
    }
    let safe = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if safe {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

/// LAVA's `yaml_quote`: the value dumped by PyYAML's safe dumper on one line, every scalar
/// double-quoted (non-string scalars carry the non-specific tag, e.g. `! "3"`), collections in
/// flow style.
pub fn yaml_quote(value: &Value) -> String {
    let mut out = String::new();
    write_yaml_quoted(&mut out, value);
    out
}

fn write_yaml_quoted(out: &mut String, value: &Value) {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("! \"null\""),
        ValueKind::Bool => {
            out.push_str(if value.is_true() {
                "! \"true\""
            } else {
                "! \"false\""
            });
        }
        ValueKind::Number => {
            if value.is_integer() {
                let _ = write!(out, "! \"{value}\"");
            } else {
                let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
                let text = if f.is_nan() {
                    ".nan".to_string()
                } else if f.is_infinite() {
                    if f > 0.0 { ".inf" } else { "-.inf" }.to_string()
                } else {
                    let repr = py_float(f).to_lowercase();
                    if !repr.contains('.') && repr.contains('e') {
                        repr.replacen('e', ".0e", 1)
                    } else {
                        repr
                    }
                };
                let _ = write!(out, "! \"{text}\"");
            }
        }
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            if let Ok(items) = value.try_iter() {
                for (i, item) in items.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_yaml_quoted(out, &item);
                }
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(keys) = value.try_iter() {
                for (i, key) in keys.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_yaml_quoted(out, &key);
                    out.push_str(": ");
                    write_yaml_quoted(out, &value.get_item(&key).unwrap_or_default());
                }
            }
            out.push('}');
        }
        _ => write_yaml_double_quoted(out, &py_str(value)),
    }
}

/// A YAML double-quoted scalar as PyYAML writes it without `allow_unicode`: printable ASCII
/// as is, the usual short escapes, everything else as `\xXX`, `\uXXXX` or `\UXXXXXXXX`.
fn write_yaml_double_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        let short = match c {
            '\0' => Some('0'),
            '\x07' => Some('a'),
            '\x08' => Some('b'),
            '\t' => Some('t'),
            '\n' => Some('n'),
            '\x0b' => Some('v'),
            '\x0c' => Some('f'),
            '\r' => Some('r'),
            '\x1b' => Some('e'),
            '"' => Some('"'),
            '\\' => Some('\\'),
            '\u{85}' => Some('N'),
            '\u{a0}' => Some('_'),
            '\u{2028}' => Some('L'),
            '\u{2029}' => Some('P'),
            _ => None,
        };
        if let Some(e) = short {
            out.push('\\');
            out.push(e);
        } else if (' '..='\x7e').contains(&c) {
            out.push(c);
        } else {
            let n = c as u32;
            let _ = if n <= 0xff {
                write!(out, "\\x{n:02X}")
            } else if n <= 0xffff {
                write!(out, "\\u{n:04X}")
            } else {
                write!(out, "\\U{n:08X}")
            };
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_of_containers_is_python_repr() {
        let v = Value::from(vec![Value::from("a"), Value::from("it's"), Value::from(())]);
        assert_eq!(py_str(&v), r#"['a', "it's", None]"#);
        let m = Value::from_pairs([("k", Value::from(true)), ("n", Value::from(2))]);
        assert_eq!(py_str(&m), "{'k': True, 'n': 2}");
        assert_eq!(py_str(&Value::UNDEFINED), "");
        let with_undefined = Value::from(vec![Value::UNDEFINED]);
        assert_eq!(py_str(&with_undefined), "[Undefined]");
        assert_eq!(py_str(&Value::from(false)), "False");
    }

    #[test]
    fn floats_print_like_python() {
        assert_eq!(py_float(1.0), "1.0");
        assert_eq!(py_float(0.1), "0.1");
        assert_eq!(py_float(1e16), "1e+16");
        assert_eq!(py_float(123456789.5), "123456789.5");
        assert_eq!(py_float(1.5e-5), "1.5e-05");
        assert_eq!(py_float(0.0001), "0.0001");
        assert_eq!(py_float(-2.5e20), "-2.5e+20");
    }

    #[test]
    fn string_repr_escapes() {
        let mut s = String::new();
        write_str_repr(&mut s, "a\\b\n'\"\x01é");
        assert_eq!(s, r#"'a\\b\n\'"\x01é'"#);
    }

    #[test]
    fn shlex_quote_matches_python() {
        assert_eq!(shlex_quote(""), "''");
        assert_eq!(shlex_quote("abc/d-e.f:1,2=3@%+"), "abc/d-e.f:1,2=3@%+");
        assert_eq!(shlex_quote("a b"), "'a b'");
        assert_eq!(shlex_quote("it's"), "'it'\"'\"'s'");
    }

    #[test]
    fn yaml_quote_matches_pyyaml() {
        assert_eq!(yaml_quote(&Value::from("a\"b\\c\té")), r#""a\"b\\c\t\xE9""#);
        assert_eq!(yaml_quote(&Value::from(3)), r#"! "3""#);
        assert_eq!(yaml_quote(&Value::from(1e20)), r#"! "1.0e+20""#);
        let v = Value::from(vec![Value::from("x"), Value::from(true)]);
        assert_eq!(yaml_quote(&v), r#"["x", ! "true"]"#);
        let m = Value::from_pairs([("k", Value::from(()))]);
        assert_eq!(yaml_quote(&m), r#"{"k": ! "null"}"#);
    }
}
