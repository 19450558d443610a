//! Small helpers over YAML values: typed lookups and Python-style rendering for messages.

use serde_yaml::{Mapping, Value};

/// `map[key]` for a string key.
pub fn get<'a>(map: &'a Mapping, key: &str) -> Option<&'a Value> {
    map.get(key)
}

/// `value[k1][k2]...`, following mappings only.
pub fn lookup<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = value;
    for key in path {
        cur = cur.as_mapping()?.get(*key)?;
    }
    Some(cur)
}

/// Python's truthiness of a YAML value.
pub fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Sequence(s)) => !s.is_empty(),
        Some(Value::Mapping(m)) => !m.is_empty(),
        Some(Value::Tagged(t)) => truthy(Some(&t.value)),
    }
}

/// A YAML scalar as text (`None` for maps, lists and null).
pub fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_string()),
        _ => None,
    }
}

/// Render a value the way Python's `repr` would, for error messages that LAVA
/// formats with `%s` of a dict or list.
pub fn python_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Number(n) => match n.as_f64().filter(|_| n.is_f64()) {
            Some(f) => lava_python::float_repr(f),
            None => n.to_string(),
        },
        Value::String(s) => lava_python::str_repr(s),
        Value::Sequence(seq) => {
            let items: Vec<String> = seq.iter().map(python_repr).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Mapping(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", python_repr(k), python_repr(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Tagged(t) => python_repr(&t.value),
    }
}

/// Type name of a YAML value, for "expected X, found Y" messages.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_repr_matches_python() {
        let v: Value = serde_yaml::from_str("[a, 1, true, null, {k: it's}]").unwrap();
        assert_eq!(python_repr(&v), "['a', 1, True, None, {'k': \"it's\"}]");
    }

    #[test]
    fn truthiness() {
        assert!(!truthy(None));
        assert!(!truthy(Some(&Value::String(String::new()))));
        assert!(truthy(Some(&serde_yaml::from_str::<Value>("1").unwrap())));
        assert!(!truthy(Some(&serde_yaml::from_str::<Value>("0").unwrap())));
        assert!(!truthy(Some(&serde_yaml::from_str::<Value>("[]").unwrap())));
    }
}
