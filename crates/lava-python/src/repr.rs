//! Python's `repr()` of the scalar types LAVA prints: `str`, `bytes` and `float`.
//!
//! `repr(str)` quotes with `'` unless the text holds a `'` and no `"`, escapes the quote,
//! the backslash, `\n`, `\r`, `\t`, and every character `str.isprintable` rejects
//! (`\xhh`, `\uhhhh` or `\Uhhhhhhhh`). `repr(float)` is the shortest text that reads back
//! as the same number, in fixed notation for decimal exponents -4 to 15 (always with a
//! fractional part) and in scientific notation (`1e+16`, `1.5e-05`) otherwise; of two
//! shortest forms equally near, the one ending in an even digit.

use std::fmt::Write;

use crate::printable::NON_PRINTABLE;

/// Python's `str.isprintable()` for one character (CPython 3.11, Unicode 14): false for
/// control, format, surrogate, private-use and unassigned characters and for every
/// separator but the ASCII space.
pub fn is_printable(c: char) -> bool {
    let code = c as u32;
    // The ranges are sorted and disjoint: find the last one starting at or before `code`.
    let after = NON_PRINTABLE.partition_point(|&(first, _)| first <= code);
    after == 0 || NON_PRINTABLE[after - 1].1 < code
}

/// Python's `repr(s)` of a `str`.
pub fn str_repr(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    write_str_repr(&mut out, s);
    out
}

/// Appends Python's `repr(s)` of a `str` to `out`.
pub fn write_str_repr(out: &mut String, s: &str) {
    let quote = quote_for(s.contains('\''), s.contains('"'));
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' | '\n' | '\r' | '\t' => push_short_escape(out, c),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !is_printable(c) => push_code_escape(out, c as u32, false),
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Python's `repr(b)` of a `bytes` value (`b'...'`).
pub fn bytes_repr(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 3);
    write_bytes_repr(&mut out, bytes);
    out
}

/// Appends Python's `repr(b)` of a `bytes` value to `out`: printable ASCII as is, the
/// short escapes of `str`, every other byte as `\xhh`.
pub fn write_bytes_repr(out: &mut String, bytes: &[u8]) {
    let quote = quote_for(bytes.contains(&b'\''), bytes.contains(&b'"'));
    out.push('b');
    out.push(quote);
    for &byte in bytes {
        let c = char::from(byte);
        match c {
            '\\' | '\n' | '\r' | '\t' => push_short_escape(out, c),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => push_code_escape(out, u32::from(byte), false),
        }
    }
    out.push(quote);
}

/// Python's `repr(f)` of a `float` (`1.0`, `0.1`, `1e+16`, `1.5e-05`, `inf`, `nan`).
pub fn float_repr(f: f64) -> String {
    let mut out = String::new();
    write_float_repr(&mut out, f);
    out
}

/// Appends Python's `repr(f)` of a `float` to `out`.
pub fn write_float_repr(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("nan");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "inf" } else { "-inf" });
    } else if f == 0.0 {
        out.push_str(if f.is_sign_negative() { "-0.0" } else { "0.0" });
    } else {
        if f < 0.0 {
            out.push('-');
        }
        let (digits, exponent) = shortest_digits(f.abs());
        if (-4..16).contains(&exponent) {
            write_fixed(out, &digits, exponent);
        } else {
            let (first, rest) = digits.split_at(1);
            out.push_str(first);
            if !rest.is_empty() {
                out.push('.');
                out.push_str(rest);
            }
            let sign = if exponent < 0 { '-' } else { '+' };
            let _ = write!(out, "e{sign}{:02}", exponent.abs());
        }
    }
}

/// The fewest significant digits that read back as `f` (positive, finite), and the
/// decimal exponent of the first: `("15", -5)` for 1.5e-05. Of the candidates with that
/// many digits the nearest to `f` wins, ties to the even digit, as in Python's `repr`
/// (Rust's shortest form can pick the other one of a tie).
fn shortest_digits(f: f64) -> (String, i32) {
    let exact = |precision: usize| format!("{f:.precision$e}");
    let text = (0..17)
        .map(exact)
        .find(|text| text.parse::<f64>() == Ok(f))
        .unwrap_or_else(|| exact(16));
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    (mantissa.replace('.', ""), exponent.parse().unwrap_or(0))
}

/// `digits` × 10^(`exponent` - len + 1) in fixed notation, with at least one fractional digit.
fn write_fixed(out: &mut String, digits: &str, exponent: i32) {
    if exponent < 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exponent - 1) as usize));
        out.push_str(digits);
        return;
    }
    let whole = exponent as usize + 1;
    if digits.len() > whole {
        out.push_str(&digits[..whole]);
        out.push('.');
        out.push_str(&digits[whole..]);
    } else {
        out.push_str(digits);
        out.extend(std::iter::repeat_n('0', whole - digits.len()));
        out.push_str(".0");
    }
}

/// The quote Python picks: `"` only when the text has a `'` and no `"`.
fn quote_for(has_single: bool, has_double: bool) -> char {
    if has_single && !has_double { '"' } else { '\'' }
}

fn push_short_escape(out: &mut String, c: char) {
    out.push_str(match c {
        '\\' => "\\\\",
        '\n' => "\\n",
        '\r' => "\\r",
        _ => "\\t",
    });
}

/// `\xhh`, `\uhhhh` or `\Uhhhhhhhh`, the shortest that holds `code`: Python's escapes
/// (lower-case hex) and YAML's (`upper_case`).
pub(crate) fn push_code_escape(out: &mut String, code: u32, upper_case: bool) {
    let _ = match (code, upper_case) {
        (..=0xff, false) => write!(out, "\\x{code:02x}"),
        (..=0xff, true) => write!(out, "\\x{code:02X}"),
        (..=0xffff, false) => write!(out, "\\u{code:04x}"),
        (..=0xffff, true) => write!(out, "\\u{code:04X}"),
        (_, false) => write!(out, "\\U{code:08x}"),
        (_, true) => write!(out, "\\U{code:08X}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_repr_quotes_and_escapes() {
        assert_eq!(str_repr(""), "''");
        assert_eq!(str_repr("it's"), r#""it's""#);
        assert_eq!(str_repr(r#"it's "x""#), r#"'it\'s "x"'"#);
        assert_eq!(str_repr("a\\b\n\r\t"), r"'a\\b\n\r\t'");
        assert_eq!(str_repr("\x01\x7f\u{a0}é"), r"'\x01\x7f\xa0é'");
        assert_eq!(
            str_repr("\u{200b}\u{2028}\u{e000}"),
            r"'\u200b\u2028\ue000'"
        );
        assert_eq!(str_repr("\u{e0001}😀"), "'\\U000e0001😀'");
        assert_eq!(str_repr("\u{3000}\u{3042}"), "'\\u3000\u{3042}'");
    }

    #[test]
    fn printable_follows_python() {
        assert!(is_printable(' '));
        assert!(is_printable('~'));
        assert!(is_printable('é'));
        assert!(!is_printable('\0'));
        assert!(!is_printable('\u{ad}'));
        assert!(!is_printable('\u{10ffff}'));
        assert!(!is_printable('\u{378}'), "unassigned");
    }

    #[test]
    fn bytes_repr_escapes_non_ascii() {
        assert_eq!(bytes_repr(b"a'b"), r#"b"a'b""#);
        assert_eq!(bytes_repr(b"\x00\xe9\\\n"), r"b'\x00\xe9\\\n'");
    }

    #[test]
    fn floats_print_like_python() {
        assert_eq!(float_repr(1.0), "1.0");
        assert_eq!(float_repr(0.1), "0.1");
        assert_eq!(float_repr(1e16), "1e+16");
        assert_eq!(float_repr(1e15), "1000000000000000.0");
        assert_eq!(float_repr(123456789.5), "123456789.5");
        assert_eq!(float_repr(1.5e-5), "1.5e-05");
        assert_eq!(float_repr(0.0001), "0.0001");
        assert_eq!(float_repr(-2.5e20), "-2.5e+20");
        assert_eq!(float_repr(-0.0), "-0.0");
        assert_eq!(float_repr(f64::NEG_INFINITY), "-inf");
        assert_eq!(float_repr(f64::NAN), "nan");
        assert_eq!(float_repr(5e-324), "5e-324");
        // The exact value ends in ...55.625: of the two shortest forms Python takes the even.
        assert_eq!(float_repr(253166392192955.63), "253166392192955.62");
        assert_eq!(float_repr(100.0), "100.0");
        assert_eq!(float_repr(0.00012), "0.00012");
    }
}
