//! Parsing device configuration YAML the way LAVA's PyYAML loader accepts it: a key that
//! appears twice in one mapping is not an error, the last value wins and the key keeps its
//! first position (several LAVA device-type templates render such duplicates).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_yaml::{Mapping, Number, Value};
use std::fmt;

/// Why a YAML text could not become a value.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    /// Refused before parsing: too large or nested too deep (see `lava_yaml`).
    #[error(transparent)]
    Limit(#[from] lava_yaml::YamlLimitError),
    /// Not YAML.
    #[error(transparent)]
    Syntax(#[from] serde_yaml::Error),
}

/// Parse one YAML document into a value, accepting duplicate mapping keys, after
/// `lava_yaml::check` (size and nesting limits, in linear time).
pub fn parse(text: &str) -> Result<Value, YamlError> {
    lava_yaml::check(text)?;
    let Lenient(value) = serde_yaml::from_str(text)?;
    Ok(value)
}

struct Lenient(Value);

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientVisitor).map(Lenient)
    }
}

struct LenientVisitor;

impl<'de> Visitor<'de> for LenientVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(Number::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(Number::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Number(Number::from(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(LenientVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Lenient(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Mapping::new();
        while let Some((Lenient(key), Lenient(value))) = map.next_entry()? {
            // IndexMap-backed: inserting an existing key replaces the value in place.
            out.insert(key, value);
        }
        Ok(Value::Mapping(out))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        // A tagged node (`!tag value`): keep the tag, as serde_yaml's own Value does.
        let (tag, variant): (String, _) = data.variant()?;
        let Lenient(value) = de::VariantAccess::newtype_variant(variant)?;
        Ok(Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
            tag: serde_yaml::value::Tag::new(tag),
            value,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_last_wins_first_position() {
        let v = parse("a: 1\nb: 2\na: {x: 3}\n").unwrap();
        let map = v.as_mapping().unwrap();
        let keys: Vec<&str> = map.keys().filter_map(Value::as_str).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(map["a"]["x"].as_i64(), Some(3));
    }

    #[test]
    fn scalars_and_tags() {
        let v = parse("i: -3\nf: 2.5\ns: 'x'\nn: ~\nb: true\nl: [1, two]\nt: !custom 5\n").unwrap();
        assert_eq!(v["i"].as_i64(), Some(-3));
        assert_eq!(v["f"].as_f64(), Some(2.5));
        assert_eq!(v["s"].as_str(), Some("x"));
        assert!(v["n"].is_null());
        assert_eq!(v["b"].as_bool(), Some(true));
        assert_eq!(v["l"][1].as_str(), Some("two"));
        assert!(matches!(v["t"], Value::Tagged(_)));
        assert!(parse("a: [1\n").is_err());
    }

    #[test]
    fn deeply_nested_configurations_are_refused_before_parsing() {
        let deep = format!("actions: {}{}\n", "{a: ".repeat(50_000), "}".repeat(50_000));
        let error = parse(&deep).unwrap_err();
        assert!(matches!(error, YamlError::Limit(_)), "{error}");
        assert!(
            error.to_string().contains("nests more than 64 levels"),
            "{error}"
        );
        let config = crate::DeviceConfig::from_yaml_str(&deep, "devices/deep.yaml").unwrap_err();
        assert!(
            config
                .to_string()
                .starts_with("devices/deep.yaml could not be parsed: the YAML document nests"),
            "{config}"
        );
    }
}
