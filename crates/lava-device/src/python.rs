//! Python's text forms of template values: `str()`, `repr()` and PyYAML's one-line
//! double-quoted dump (LAVA's `yaml_quote` filter).
//!
//! Jinja2 turns every value it prints into text with Python's `str()`, so a list prints as
//! `['a', 'b']`, `None` as `None` and `True` as `True`; minijinja's own forms differ. The
//! functions here walk template values and write their scalars with `lava_python`.

use lava_python::{
    write_bytes_repr, write_float_repr, write_str_repr, write_yaml_double_quoted, yaml_float,
};
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
        ValueKind::Bytes => write_bytes_repr(out, value.as_bytes().unwrap_or_default()),
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
        write_float_repr(out, f);
    } else {
        let _ = write!(out, "{value}");
    }
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
                let _ = write!(out, "! \"{}\"", yaml_float(f));
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
        assert_eq!(py_str(&Value::from(vec![Value::from(1e16)])), "[1e+16]");
        assert_eq!(
            py_repr(&Value::from_bytes(b"\xe9'".to_vec())),
            r#"b"\xe9'""#
        );
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
