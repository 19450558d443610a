//! Filters, methods and the output formatter that make minijinja behave as LAVA's Jinja2
//! environment does.
//!
//! LAVA adds three filters (`shlex_quote`, `yaml_quote`, `qemu_guest_fs_interface`). Jinja2's
//! own `default`, `join`, `replace`, `string` and `indent` print values with Python's `str()`
//! and take Python keyword arguments, so they are replaced here too. Python dictionary and
//! string methods called from templates (`d.get(k)`, `d.items()`, `s.split()`...) are served
//! by [`call_method`].

use crate::python::{py_str, write_str, yaml_quote};
use lava_python::shlex_quote;
use minijinja::value::{Kwargs, Value, ValueKind, from_args};
use minijinja::{Environment, Error, ErrorKind, Output, State};

/// LAVA's x86 architectures (`lava_common.constants.X86_ARCHS`).
const X86_ARCHS: [&str; 3] = ["amd64", "x86_64", "i386"];

/// Install the filters, the method callback and the formatter on `env`.
pub fn install(env: &mut Environment<'_>) {
    env.add_filter("shlex_quote", |value: &Value| -> Result<String, Error> {
        // Python's quote() returns "''" for any false value, then needs a string.
        if !value.is_true() {
            return Ok("''".to_string());
        }
        match value.as_str() {
            Some(s) => Ok(shlex_quote(s)),
            None => Err(type_error(format!(
                "shlex_quote expected string, got {}",
                value.kind()
            ))),
        }
    });
    env.add_filter("yaml_quote", |value: &Value| yaml_quote(value));
    env.add_filter("qemu_guest_fs_interface", qemu_guest_fs_interface);
    env.add_filter("string", |value: &Value| py_str(value));
    env.add_filter("join", join);
    env.add_filter("replace", replace);
    env.add_filter("default", default);
    env.add_filter("d", default);
    env.add_filter("indent", indent);
    env.set_unknown_method_callback(call_method);
    env.set_formatter(format_value);
}

/// What `{{ value }}` writes: Python's `str()` of the value (no escaping: LAVA turns
/// autoescape off).
pub fn format_value(
    out: &mut Output<'_>,
    _state: &mut State<'_, '_>,
    value: &Value,
) -> Result<(), Error> {
    if let Some(s) = value.as_str() {
        return out.write_str(s).map_err(Error::from);
    }
    let mut text = String::new();
    write_str(&mut text, value);
    out.write_str(&text).map_err(Error::from)
}

fn type_error(msg: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg)
}

/// Bind positional and keyword arguments to a Python signature's parameter names.
/// `args[0]` is the filtered value and binds to `params[0]`.
fn bind(
    filter: &str,
    args: &[Value],
    kwargs: &Kwargs,
    params: &[&str],
) -> Result<Vec<Option<Value>>, Error> {
    if args.len() > params.len() {
        return Err(Error::new(
            ErrorKind::TooManyArguments,
            format!(
                "{filter}() takes at most {} arguments",
                params.len().saturating_sub(1)
            ),
        ));
    }
    let mut bound: Vec<Option<Value>> = vec![None; params.len()];
    for (slot, arg) in bound.iter_mut().zip(args) {
        *slot = Some(arg.clone());
    }
    let names: Vec<String> = kwargs.args().map(str::to_string).collect();
    for name in names {
        let Some(i) = params.iter().position(|p| *p == name) else {
            return Err(Error::new(
                ErrorKind::TooManyArguments,
                format!("{filter}() got an unexpected keyword argument '{name}'"),
            ));
        };
        if bound[i].is_some() {
            return Err(Error::new(
                ErrorKind::TooManyArguments,
                format!("{filter}() got multiple values for argument '{name}'"),
            ));
        }
        bound[i] = Some(kwargs.get::<Value>(&name)?);
    }
    Ok(bound)
}

/// `arch|qemu_guest_fs_interface(iface)`: `iface` when it is non-empty, else `ide` for the
/// x86 architectures and `virtio` otherwise.
fn qemu_guest_fs_interface(args: &[Value], kwargs: Kwargs) -> Result<Value, Error> {
    let b = bind(
        "qemu_guest_fs_interface",
        args,
        &kwargs,
        &["arch", "guestfs_interface"],
    )?;
    if let Some(iface) = b[1].as_ref().filter(|v| v.is_true()) {
        return Ok(iface.clone());
    }
    let arch = b[0].as_ref().and_then(|v| v.as_str()).unwrap_or_default();
    Ok(Value::from(if X86_ARCHS.contains(&arch) {
        "ide"
    } else {
        "virtio"
    }))
}

/// Jinja2's `join(value, d='', attribute=None)`: `str()` of every item.
fn join(args: &[Value], kwargs: Kwargs) -> Result<String, Error> {
    let b = bind("join", args, &kwargs, &["value", "d", "attribute"])?;
    let value = b[0].clone().unwrap_or_default();
    let sep = b[1].as_ref().map(py_str).unwrap_or_default();
    let attribute = b[2].as_ref().filter(|v| !v.is_none() && !v.is_undefined());
    let mut out = String::new();
    if value.is_undefined() {
        return Ok(out);
    }
    if let Some(s) = value.as_str() {
        // Iterating a string yields its characters.
        for (i, c) in s.chars().enumerate() {
            if i > 0 {
                out.push_str(&sep);
            }
            out.push(c);
        }
        return Ok(out);
    }
    for (i, item) in value.try_iter()?.enumerate() {
        if i > 0 {
            out.push_str(&sep);
        }
        let item = match attribute {
            Some(attr) => match attr.as_str() {
                Some(name) => {
                    let mut v = item;
                    for part in name.split('.') {
                        v = match part.parse::<usize>() {
                            Ok(idx) => v.get_item(&Value::from(idx))?,
                            Err(_) => v.get_attr(part)?,
                        };
                    }
                    v
                }
                None => item.get_item(attr)?,
            },
            None => item,
        };
        write_str(&mut out, &item);
    }
    Ok(out)
}

/// Jinja2's `replace(s, old, new, count=None)` on `str(s)`.
fn replace(args: &[Value], kwargs: Kwargs) -> Result<String, Error> {
    let b = bind("replace", args, &kwargs, &["s", "old", "new", "count"])?;
    let (Some(old), Some(new)) = (&b[1], &b[2]) else {
        return Err(Error::new(
            ErrorKind::MissingArgument,
            "replace() needs the old and new strings",
        ));
    };
    let s = b[0].as_ref().map(py_str).unwrap_or_default();
    let (old, new) = (py_str(old), py_str(new));
    let count = match &b[3] {
        Some(c) if !c.is_none() => match c.as_i64() {
            Some(n) => n,
            None => return Err(type_error("replace() count must be an integer".into())),
        },
        _ => -1,
    };
    Ok(if count < 0 {
        s.replace(&old, &new)
    } else {
        s.replacen(&old, &new, count as usize)
    })
}

/// Jinja2's `default(value, default_value='', boolean=False)`: only an undefined value (or,
/// with `boolean`, a false one) is replaced; `None` is a defined value.
fn default(args: &[Value], kwargs: Kwargs) -> Result<Value, Error> {
    let b = bind(
        "default",
        args,
        &kwargs,
        &["value", "default_value", "boolean"],
    )?;
    let value = b[0].clone().unwrap_or_default();
    let boolean = b[2].as_ref().is_some_and(|v| v.is_true());
    if value.is_undefined() || (boolean && !value.is_true()) {
        Ok(b[1].clone().unwrap_or_else(|| Value::from("")))
    } else {
        Ok(value)
    }
}

/// Jinja2's `indent(s, width=4, first=False, blank=False)`.
fn indent(args: &[Value], kwargs: Kwargs) -> Result<String, Error> {
    let b = bind("indent", args, &kwargs, &["s", "width", "first", "blank"])?;
    let value = b[0].clone().unwrap_or_default();
    let Some(s) = value.as_str() else {
        return Err(type_error(format!(
            "indent() needs a string, got {}",
            value.kind()
        )));
    };
    let indention = match &b[1] {
        None => "    ".to_string(),
        Some(w) if w.kind() == ValueKind::String => w.as_str().unwrap_or_default().to_string(),
        Some(w) => match w.as_i64() {
            Some(n) => " ".repeat(n.max(0) as usize),
            None => return Err(type_error("indent() width must be an integer".into())),
        },
    };
    let first = b[2].as_ref().is_some_and(|v| v.is_true());
    let blank = b[3].as_ref().is_some_and(|v| v.is_true());
    let mut text = s.to_string();
    text.push('\n');
    let lines = py_splitlines(&text);
    let mut rv = String::new();
    if blank {
        for (i, line) in lines.iter().enumerate() {
            if i > 0 {
                rv.push('\n');
                rv.push_str(&indention);
            }
            rv.push_str(line);
        }
    } else {
        for (i, line) in lines.iter().enumerate() {
            if i > 0 {
                rv.push('\n');
                if !line.is_empty() {
                    rv.push_str(&indention);
                }
            }
            rv.push_str(line);
        }
    }
    if first {
        rv.insert_str(0, &indention);
    }
    Ok(rv)
}

/// Python's `str.splitlines()` (without keepends): splits on every line boundary Python
/// knows and drops a final empty piece.
fn py_splitlines(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let boundary = matches!(
            c,
            '\n' | '\r'
                | '\x0b'
                | '\x0c'
                | '\x1c'
                | '\x1d'
                | '\x1e'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if boundary {
            lines.push(&s[start..i]);
            let mut end = i + c.len_utf8();
            if c == '\r' && matches!(chars.peek(), Some((_, '\n'))) {
                chars.next();
                end += 1;
            }
            start = end;
        }
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// Python methods that LAVA's templates call on dictionaries and strings.
pub fn call_method(
    _state: &mut State<'_, '_>,
    value: &Value,
    method: &str,
    all_args: &[Value],
) -> Result<Value, Error> {
    let (args, kwargs): (&[Value], Kwargs) = from_args(all_args)?;
    match (value.kind(), method) {
        (ValueKind::Map, "get") => {
            let b = bind("get", args, &kwargs, &["key", "default"])?;
            let key = b[0]
                .clone()
                .ok_or_else(|| Error::new(ErrorKind::MissingArgument, "get() needs a key"))?;
            let found = value.get_item(&key)?;
            Ok(if found.is_undefined() {
                b[1].clone().unwrap_or(Value::from(()))
            } else {
                found
            })
        }
        (ValueKind::Map, "items") => {
            no_args(method, args)?;
            let mut items = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                items.push(Value::from(vec![key, item]));
            }
            Ok(Value::from(items))
        }
        (ValueKind::Map, "keys") => {
            no_args(method, args)?;
            Ok(Value::from(value.try_iter()?.collect::<Vec<_>>()))
        }
        (ValueKind::Map, "values") => {
            no_args(method, args)?;
            let mut items = Vec::new();
            for key in value.try_iter()? {
                items.push(value.get_item(&key)?);
            }
            Ok(Value::from(items))
        }
        (ValueKind::String, _) => {
            string_method(value.as_str().unwrap_or_default(), method, args, kwargs)
        }
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

fn no_args(method: &str, args: &[Value]) -> Result<(), Error> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::TooManyArguments,
            format!("{method}() takes no arguments"),
        ))
    }
}

fn str_arg(args: &[Value], i: usize) -> Option<String> {
    args.get(i).filter(|v| !v.is_none()).map(py_str)
}

fn string_method(s: &str, method: &str, args: &[Value], kwargs: Kwargs) -> Result<Value, Error> {
    let chars_arg = str_arg(args, 0);
    let trim_set = |c: char| match &chars_arg {
        Some(set) => set.contains(c),
        None => c.is_whitespace(),
    };
    Ok(match method {
        "lower" => Value::from(s.to_lowercase()),
        "upper" => Value::from(s.to_uppercase()),
        "strip" => Value::from(s.trim_matches(trim_set)),
        "lstrip" => Value::from(s.trim_start_matches(trim_set)),
        "rstrip" => Value::from(s.trim_end_matches(trim_set)),
        "startswith" => Value::from(s.starts_with(&str_arg(args, 0).unwrap_or_default())),
        "endswith" => Value::from(s.ends_with(&str_arg(args, 0).unwrap_or_default())),
        "replace" => {
            let mut all = vec![Value::from(s)];
            all.extend(args.iter().cloned());
            Value::from(replace(&all, kwargs)?)
        }
        "split" => {
            let parts: Vec<Value> = match str_arg(args, 0) {
                Some(sep) if !sep.is_empty() => s.split(sep.as_str()).map(Value::from).collect(),
                Some(_) => return Err(type_error("empty separator".into())),
                None => s.split_whitespace().map(Value::from).collect(),
            };
            Value::from(parts)
        }
        "join" => {
            let items = args.first().cloned().unwrap_or_default();
            let mut out = String::new();
            for (i, item) in items.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(s);
                }
                write_str(&mut out, &item);
            }
            Value::from(out)
        }
        _ => return Err(Error::from(ErrorKind::UnknownMethod)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment<'static> {
        let mut env = Environment::new();
        install(&mut env);
        env
    }

    fn render(src: &str) -> String {
        env().render_str(src, ()).unwrap()
    }

    #[test]
    fn printing_follows_python_str() {
        assert_eq!(
            render("{{ [1, 'a'] }} {{ none }} {{ true }} {{ 3 / 2 }}"),
            "[1, 'a'] None True 1.5"
        );
        assert_eq!(render("{{ missing }}|{{ 4 / 2 }}"), "|2.0");
        assert_eq!(render("{{ [none, true]|join(',') }}"), "None,True");
        assert_eq!(render("{{ [1, 2]|string }}"), "[1, 2]");
    }

    #[test]
    fn default_keeps_none_and_honours_boolean() {
        assert_eq!(render("{{ none|default('x') }}"), "None");
        assert_eq!(render("{{ ''|default('x', true) }}"), "x");
        assert_eq!(render("{{ ''|default('x', boolean=true) }}"), "x");
        assert_eq!(render("{{ nope|default(default_value=3) }}"), "3");
    }

    #[test]
    fn indent_matches_jinja2() {
        assert_eq!(render("{{ 'a\nb\n\nc'|indent(2) }}"), "a\n  b\n\n  c");
        assert_eq!(
            render("{{ 'a\nb'|indent(first=True, width=3) }}"),
            "   a\n   b"
        );
        assert_eq!(render("{{ 'a\n'|indent(2) }}"), "a\n");
        assert_eq!(render("{{ 'a\n\nb'|indent(2, blank=true) }}"), "a\n  \n  b");
        assert_eq!(
            render("{% filter indent(width=4) %}x\ny\n{% endfilter %}"),
            "x\n    y\n"
        );
    }

    #[test]
    fn replace_counts_and_converts() {
        assert_eq!(render("{{ 'aaa'|replace('a', 'b', 2) }}"), "bba");
        assert_eq!(render("{{ 115200|replace('1', 'x') }}"), "xx5200");
        assert_eq!(render("{{ none|replace('o', '0') }}"), "N0ne");
    }

    #[test]
    fn lava_filters() {
        assert_eq!(render("{{ 'a b'|shlex_quote }}"), "'a b'");
        assert_eq!(render("{{ nope|shlex_quote }}"), "''");
        assert_eq!(
            render("{{ 'x86_64'|qemu_guest_fs_interface(nope) }}"),
            "ide"
        );
        assert_eq!(
            render("{{ 'arm64'|qemu_guest_fs_interface('') }}"),
            "virtio"
        );
        assert_eq!(
            render("{{ 'arm64'|qemu_guest_fs_interface('scsi') }}"),
            "scsi"
        );
        assert_eq!(render("{{ 'q'|yaml_quote }}"), "\"q\"");
    }

    #[test]
    fn dict_and_string_methods() {
        let src = "{% set d = {'a': 1, 'b': [2]} %}{{ d.get('a') }} {{ d.get('z') }} \
                   {{ d.get('z', 5) }}{% for k, v in d.items() %} {{ k }}={{ v }}{% endfor %}";
        assert_eq!(render(src), "1 None 5 a=1 b=[2]");
        assert_eq!(
            render("{{ ' a b '.split() }} {{ 'x-y'.split('-') }}"),
            "['a', 'b'] ['x', 'y']"
        );
        assert_eq!(
            render("{{ 'abc'.startswith('ab') }} {{ ' s '.strip() }}"),
            "True s"
        );
    }

    #[test]
    fn splitlines_like_python() {
        assert_eq!(py_splitlines("a\r\nb\rc\n"), vec!["a", "b", "c"]);
        assert_eq!(py_splitlines("a\n\n"), vec!["a", ""]);
    }
}
