//! The namespaced job data store (`job.context` in LAVA):
//! `{namespace: {action: {label: {key: value}}}}`.

use serde_yaml::Value;
use std::collections::BTreeMap;

type Keys = BTreeMap<String, Value>;
type Labels = BTreeMap<String, Keys>;
type Actions = BTreeMap<String, Labels>;

/// Dynamic data written and read by actions at run time, isolated by namespace.
#[derive(Debug, Default, Clone)]
pub struct JobData {
    namespaces: BTreeMap<String, Actions>,
}

impl JobData {
    /// Store `value` under `namespace/action/label/key`.
    pub fn set(&mut self, namespace: &str, action: &str, label: &str, key: &str, value: Value) {
        debug_assert!(
            !label.is_empty() && !key.is_empty(),
            "empty label or key is a bug"
        );
        self.namespaces
            .entry(namespace.to_string())
            .or_default()
            .entry(action.to_string())
            .or_default()
            .entry(label.to_string())
            .or_default()
            .insert(key.to_string(), value);
    }

    /// Read `namespace/action/label/key` (None when missing).
    pub fn get(&self, namespace: &str, action: &str, label: &str, key: &str) -> Option<&Value> {
        self.namespaces
            .get(namespace)?
            .get(action)?
            .get(label)?
            .get(key)
    }

    /// A string value, if present.
    pub fn get_str(&self, namespace: &str, action: &str, label: &str, key: &str) -> Option<&str> {
        self.get(namespace, action, label, key)
            .and_then(Value::as_str)
    }

    /// Every namespace that has data.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_isolate() {
        let mut data = JobData::default();
        data.set("host", "download-action", "kernel", "file", "/tmp/k".into());
        assert_eq!(
            data.get_str("host", "download-action", "kernel", "file"),
            Some("/tmp/k")
        );
        assert_eq!(data.get("guest", "download-action", "kernel", "file"), None);
    }
}
