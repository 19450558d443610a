//! Property tests: every function of the crate gives what Debian's `/usr/bin/python3`
//! (with PyYAML's C dumper) gives for the same input. One Python process answers all the
//! cases of the test binary, one JSON line per question; without that Python the tests
//! print why and pass without comparing.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use lava_python::{
    bytes_repr, float_repr, shlex_quote, shlex_split, str_repr, yaml_double_quoted, yaml_float,
};
use proptest::prelude::*;
use serde_json::{Value, json};

const PYTHON: &str = "/usr/bin/python3";

/// Answers `[op, argument]` lines with `{"ok": text}` or `{"error": message}`.
const ORACLE: &str = r#"
import json, shlex, struct, sys, unicodedata, yaml
def answer(op, arg):
    if op == "version": return unicodedata.unidata_version
    if op == "repr": return repr(arg)
    if op == "bytes_repr": return repr(bytes(arg))
    if op == "float_repr": return repr(struct.unpack("<d", bytes.fromhex(arg))[0])
    if op == "quote": return shlex.quote(arg)
    if op == "split": return shlex.split(arg)
    if op == "yaml":
        value = struct.unpack("<d", bytes.fromhex(arg[1]))[0] if arg[0] == "float" else arg[1]
        return yaml.dump(value, Dumper=yaml.CSafeDumper, default_style='"', width=10**6)[:-1]
for line in sys.stdin:
    op, arg = json.loads(line)
    try:
        reply = {"ok": answer(op, arg)}
    except ValueError as e:
        reply = {"error": str(e)}
    print(json.dumps(reply), flush=True)
"#;

struct Oracle {
    // Owned so the process lives as long as the test binary; it ends at end of input,
    // which closing `stdin` (at exit) gives it.
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Oracle {
    fn start() -> Result<Oracle, String> {
        let mut child = Command::new(PYTHON)
            .args(["-c", ORACLE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {PYTHON}: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut oracle = Oracle {
            _child: child,
            stdin,
            stdout,
        };
        oracle
            .ask("version", json!(null))
            .map_err(|e| format!("{PYTHON} with PyYAML does not answer: {e}"))?;
        Ok(oracle)
    }

    fn ask(&mut self, op: &str, arg: Value) -> Result<Value, String> {
        let line = json!([op, arg]).to_string();
        writeln!(self.stdin, "{line}").map_err(|e| e.to_string())?;
        self.stdin.flush().map_err(|e| e.to_string())?;
        let mut reply = String::new();
        self.stdout
            .read_line(&mut reply)
            .map_err(|e| e.to_string())?;
        let reply: Value = serde_json::from_str(&reply).map_err(|e| format!("{e}: {reply:?}"))?;
        match (reply.get("ok"), reply.get("error")) {
            (Some(ok), _) => Ok(ok.clone()),
            (_, Some(Value::String(error))) => Err(error.clone()),
            _ => Err(format!("unexpected reply {reply}")),
        }
    }
}

/// The shared oracle, or `None` (with the reason printed once) when there is no Python.
fn oracle() -> Option<&'static Mutex<Oracle>> {
    static ORACLE_PROCESS: OnceLock<Option<Mutex<Oracle>>> = OnceLock::new();
    ORACLE_PROCESS
        .get_or_init(|| match Oracle::start() {
            Ok(oracle) => Some(Mutex::new(oracle)),
            Err(reason) => {
                eprintln!("skipping the comparison with Python: {reason}");
                None
            }
        })
        .as_ref()
}

/// Python's answer, or `None` when there is no Python to ask.
fn python(op: &str, arg: Value) -> Option<Result<Value, String>> {
    let mut oracle = oracle()?.lock().unwrap_or_else(|e| e.into_inner());
    Some(oracle.ask(op, arg))
}

fn python_text(op: &str, arg: Value) -> Option<String> {
    let answer = python(op, arg.clone())?.unwrap_or_else(|e| panic!("{op} {arg}: {e}"));
    Some(answer.as_str().expect("a string answer").to_string())
}

/// Whether Python's Unicode database is the one `is_printable` was generated from.
fn same_unicode() -> bool {
    python_text("version", json!(null)).as_deref() == Some("14.0.0")
}

fn float_hex(f: f64) -> String {
    f.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Characters where the functions branch: quotes, escapes, whitespace, controls,
/// Latin-1, YAML's special breaks and spaces, and anything at all.
fn interesting_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range(' ', '~'),
        3 => proptest::sample::select(vec!['\'', '"', '\\', ' ', '\t', '\n', '\r', '$', '#']),
        1 => proptest::char::range('\0', '\x1f'),
        1 => proptest::char::range('\x7f', '\u{ff}'),
        1 => proptest::sample::select(vec!['\u{85}', '\u{2028}', '\u{2029}', '\u{feff}', '\u{200b}', '\u{3000}']),
        2 => any::<char>(),
    ]
}

fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(interesting_char(), 0..16).prop_map(String::from_iter)
}

/// Command-line-like text: words, quotes, escapes and whitespace in shlex's proportions.
fn command_line() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-z0-9=/.-]{1,5}",
        2 => Just(" ".to_string()),
        1 => Just("\t".to_string()),
        2 => Just("'".to_string()),
        2 => Just("\"".to_string()),
        2 => Just("\\".to_string()),
        1 => Just("\n".to_string()),
        1 => Just("$".to_string()),
        1 => any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

fn finite_or_not() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => any::<f64>(),
        2 => (-1_000_000i64..1_000_000).prop_map(|n| n as f64),
        2 => (-1_000_000i64..1_000_000, -20i32..25).prop_map(|(n, e)| n as f64 * 10f64.powi(e)),
        1 => proptest::sample::select(vec![0.0, -0.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1e16, 1e-5, 0.1]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn repr_of_str_is_pythons(s in text()) {
        // Text beyond ASCII is compared only where Python's Unicode is the table's.
        if (s.is_ascii() || same_unicode())
            && let Some(expected) = python_text("repr", json!(s))
        {
            prop_assert_eq!(str_repr(&s), expected);
        }
    }

    #[test]
    fn repr_of_bytes_is_pythons(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
        if let Some(expected) = python_text("bytes_repr", json!(bytes)) {
            prop_assert_eq!(bytes_repr(&bytes), expected);
        }
    }

    #[test]
    fn repr_of_float_is_pythons(f in finite_or_not()) {
        if let Some(expected) = python_text("float_repr", json!(float_hex(f))) {
            prop_assert_eq!(float_repr(f), expected);
        }
    }

    #[test]
    fn quote_is_shlex_quote(s in text()) {
        if let Some(expected) = python_text("quote", json!(s)) {
            prop_assert_eq!(shlex_quote(&s), expected);
        }
    }

    #[test]
    fn split_is_shlex_split(line in command_line()) {
        if let Some(expected) = python("split", json!(line)) {
            match (shlex_split(&line), expected) {
                (Ok(words), Ok(expected)) => prop_assert_eq!(json!(words), expected),
                (Err(ours), Err(theirs)) => {
                    prop_assert_eq!(ours.python_message(), theirs);
                }
                (ours, theirs) => prop_assert!(false, "{:?}: ours {:?}, Python's {:?}", line, ours, theirs),
            }
        }
    }

    #[test]
    fn quoted_words_split_back(words in proptest::collection::vec(text(), 0..6)) {
        let line: Vec<String> = words.iter().map(|w| shlex_quote(w)).collect();
        prop_assert_eq!(shlex_split(&line.join(" ")).unwrap(), words);
    }

    #[test]
    fn yaml_scalar_is_pyyamls(s in text()) {
        if let Some(expected) = python_text("yaml", json!(["str", s])) {
            prop_assert_eq!(yaml_double_quoted(&s), expected);
        }
    }

    #[test]
    fn yaml_float_is_pyyamls(f in finite_or_not()) {
        if let Some(expected) = python_text("yaml", json!(["float", float_hex(f)])) {
            prop_assert_eq!(format!("! {}", yaml_double_quoted(&yaml_float(f))), expected);
        }
    }
}
