//! Scalars as PyYAML's C dumper (libyaml) writes them in LAVA's one-line, double-quoted
//! style (`default_style='"'`, no `allow_unicode`, a width no line reaches): the log
//! lines, and the `yaml_quote` filter of device templates.
//!
//! In a double-quoted scalar printable ASCII stays as it is; `"`, `\`, the C escapes and
//! YAML's own (`\e`, `\N`, `\_`, `\L`, `\P`) are written short; every other character
//! becomes `\xXX`, `\uXXXX` or `\UXXXXXXXX` (upper-case hex). A float's text is PyYAML's
//! `represent_float`: `.nan`, `.inf`, `-.inf`, or `repr(f)` in lower case with `.0` put
//! before a bare exponent (`1e+17` becomes `1.0e+17`).

use crate::repr::{float_repr, push_code_escape};

/// `s` as a YAML double-quoted scalar, quotes included.
pub fn yaml_double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    write_yaml_double_quoted(&mut out, s);
    out
}

/// Appends `s` as a YAML double-quoted scalar to `out`.
pub fn write_yaml_double_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        let short = match c {
            '\0' => '0',
            '\x07' => 'a',
            '\x08' => 'b',
            '\t' => 't',
            '\n' => 'n',
            '\x0b' => 'v',
            '\x0c' => 'f',
            '\r' => 'r',
            '\x1b' => 'e',
            '"' => '"',
            '\\' => '\\',
            '\u{85}' => 'N',
            '\u{a0}' => '_',
            '\u{2028}' => 'L',
            '\u{2029}' => 'P',
            ' '..='~' => {
                out.push(c);
                continue;
            }
            _ => {
                push_code_escape(out, c as u32, true);
                continue;
            }
        };
        out.push('\\');
        out.push(short);
    }
    out.push('"');
}

/// The text PyYAML gives a float (before quoting): `.nan`, `.inf`, `-.inf`, `1.0`,
/// `12.5`, `1.0e+17`.
pub fn yaml_float(f: f64) -> String {
    if f.is_nan() {
        ".nan".to_string()
    } else if f.is_infinite() {
        if f > 0.0 { ".inf" } else { "-.inf" }.to_string()
    } else {
        let repr = float_repr(f);
        if !repr.contains('.') && repr.contains('e') {
            repr.replacen('e', ".0e", 1)
        } else {
            repr
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_libyaml() {
        assert_eq!(
            yaml_double_quoted("a\"b\\c\td\x1be\u{e9}\u{2603}\u{1F600}\u{85}"),
            r#""a\"b\\c\td\ee\xE9\u2603\U0001F600\N""#
        );
        assert_eq!(
            yaml_double_quoted("\0\x7f\u{a0}\u{2029}"),
            r#""\0\x7F\_\P""#
        );
        assert_eq!(yaml_double_quoted(""), r#""""#);
    }

    #[test]
    fn floats_like_pyyaml() {
        assert_eq!(yaml_float(1.0), "1.0");
        assert_eq!(yaml_float(12.5), "12.5");
        assert_eq!(yaml_float(1e17), "1.0e+17");
        assert_eq!(yaml_float(1.5e-7), "1.5e-07");
        assert_eq!(yaml_float(f64::NAN), ".nan");
        assert_eq!(yaml_float(f64::NEG_INFINITY), "-.inf");
    }
}
