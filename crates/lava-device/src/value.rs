//! YAML values (render contexts) as template values.

use minijinja::Value;
use serde_yaml::Value as Yaml;

/// Convert a YAML value into a template value, keeping mapping order.
pub fn from_yaml(value: &Yaml) -> Value {
    match value {
        Yaml::Null => Value::from(()),
        Yaml::Bool(b) => Value::from(*b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Yaml::String(s) => Value::from(s.as_str()),
        Yaml::Sequence(items) => Value::from(items.iter().map(from_yaml).collect::<Vec<_>>()),
        Yaml::Mapping(map) => {
            Value::from_pairs(map.iter().map(|(k, v)| (from_yaml(k), from_yaml(v))))
        }
        Yaml::Tagged(tagged) => from_yaml(&tagged.value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_keep_order_and_types() {
        let yaml: Yaml = serde_yaml::from_str("b: 1\na: [x, 2.5, null, true]\n").unwrap();
        let v = from_yaml(&yaml);
        let keys: Vec<String> = v.try_iter().unwrap().map(|k| k.to_string()).collect();
        assert_eq!(keys, ["b", "a"]);
        assert_eq!(
            crate::python::py_str(&v),
            "{'b': 1, 'a': ['x', 2.5, None, True]}"
        );
    }
}
