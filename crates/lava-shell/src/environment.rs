//! The overlay's `environment` and `secrets` files.

use indexmap::IndexMap;
use lava_python::shlex_quote;
use serde_yaml::Value;

use crate::error::{Result, ShellError};
use crate::testdef::check_variable_name;

/// Writes `export NAME=VALUE` lines for `data`, flattening maps and lists with `_`
/// (`NET: {ports: [a]}` → `NET_ports_0=a`), as LAVA's overlay does.
pub fn export_lines(out: &mut String, data: &Value, prefix: &str) -> Result<()> {
    match data {
        Value::Mapping(map) => {
            for (key, value) in map {
                let key = crate::testdef::scalar_text(key).unwrap_or_default();
                let name = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}_{key}")
                };
                export_lines(out, value, &name)?;
            }
        }
        Value::Sequence(items) => {
            for (index, value) in items.iter().enumerate() {
                let name = if prefix.is_empty() {
                    index.to_string()
                } else {
                    format!("{prefix}_{index}")
                };
                export_lines(out, value, &name)?;
            }
        }
        Value::Tagged(tagged) => export_lines(out, &tagged.value, prefix)?,
        scalar => {
            check_variable_name(prefix, "the environment")?;
            let text = match scalar {
                Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
                Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
                Value::Number(n) => shlex_quote(&n.to_string()),
                Value::String(s) => shlex_quote(s),
                _ => "''".to_string(),
            };
            out.push_str(&format!("export {prefix}={text}\n"));
        }
    }
    Ok(())
}

/// What goes into the `environment` file, in LAVA's order.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EnvironmentInputs {
    /// Device `environment` (exported without prefix).
    #[serde(default)]
    pub device_environment: Option<Value>,
    /// Device `device_info` (`LAVA_DEVICE_INFO_…`).
    #[serde(default)]
    pub device_info: Option<Value>,
    /// Device `static_info` (`LAVA_STATIC_INFO_…`).
    #[serde(default)]
    pub static_info: Option<Value>,
    /// Device `storage_info` (`LAVA_STORAGE_INFO_…`).
    #[serde(default)]
    pub storage_info: Option<Value>,
    /// Job `environment`, or for MultiNode the role's
    /// `protocols.lava-multinode.environment` (the caller picks).
    #[serde(default)]
    pub job_environment: Option<Value>,
    /// The job ID, exported as `LAVA_JOB_ID`.
    pub job_id: String,
    /// The worker's IP address, exported as `LAVA_DISPATCHER_IP`.
    #[serde(default)]
    pub dispatcher_ip: String,
    /// Job tags, joined with `,` here.
    #[serde(default)]
    pub job_tags: Vec<String>,
    /// The dispatcher's prefix, exported as `LAVA_DISPATCHER_PREFIX`.
    #[serde(default)]
    pub dispatcher_prefix: String,
    /// The device's host name, exported as `LAVA_DEVICE_HOSTNAME` when set.
    #[serde(default)]
    pub device_hostname: Option<String>,
    /// The device type, exported as `LAVA_DEVICE_TYPE` when set.
    #[serde(default)]
    pub device_type: Option<String>,
    /// The dispatcher's `http_url_format_string`.
    #[serde(default)]
    pub http_cache: Option<String>,
}

fn present(value: &Option<Value>) -> Option<&Value> {
    value.as_ref().filter(|v| match v {
        Value::Null => false,
        Value::Mapping(m) => !m.is_empty(),
        Value::Sequence(s) => !s.is_empty(),
        Value::String(s) => !s.is_empty(),
        _ => true,
    })
}

impl EnvironmentInputs {
    /// The text of `<results_dir>/environment`.
    pub fn render(&self) -> Result<String> {
        let mut out = String::new();
        for (data, prefix) in [
            (&self.device_environment, ""),
            (&self.device_info, "LAVA_DEVICE_INFO"),
            (&self.static_info, "LAVA_STATIC_INFO"),
            (&self.storage_info, "LAVA_STORAGE_INFO"),
            (&self.job_environment, ""),
        ] {
            if let Some(data) = present(data) {
                export_lines(&mut out, data, prefix)?;
            }
        }
        let job_id = match self.job_id.parse::<i64>() {
            Ok(number) => Value::Number(number.into()),
            Err(_) => Value::String(self.job_id.clone()),
        };
        export_lines(&mut out, &job_id, "LAVA_JOB_ID")?;
        export_lines(
            &mut out,
            &Value::String(self.dispatcher_ip.clone()),
            "LAVA_DISPATCHER_IP",
        )?;
        export_lines(
            &mut out,
            &Value::String(self.job_tags.join(",")),
            "LAVA_JOB_TAGS",
        )?;
        export_lines(
            &mut out,
            &Value::String(self.dispatcher_prefix.clone()),
            "LAVA_DISPATCHER_PREFIX",
        )?;
        for (value, name) in [
            (&self.device_hostname, "LAVA_DEVICE_HOSTNAME"),
            (&self.device_type, "LAVA_DEVICE_TYPE"),
            (&self.http_cache, "HTTP_CACHE"),
        ] {
            if let Some(value) = value.as_ref().filter(|v| !v.is_empty()) {
                export_lines(&mut out, &Value::String(value.clone()), name)?;
            }
        }
        Ok(out)
    }
}

/// The text of `<results_dir>/secrets`: job `secrets`, then the `--env-dut`
/// environment, as unquoted `KEY=value` lines. Keys and values may not contain
/// line breaks (they would forge extra lines).
pub fn render_secrets(
    secrets: &IndexMap<String, String>,
    env_dut: Option<&IndexMap<String, String>>,
) -> Result<String> {
    let mut out = String::new();
    for (key, value) in secrets.iter().chain(env_dut.into_iter().flatten()) {
        if key.is_empty() || key.contains(['\n', '\r', '=']) || value.contains(['\n', '\r']) {
            return Err(ShellError::InvalidEntry(format!("invalid secret '{key}'")));
        }
        out.push_str(&format!("{key}={value}\n"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_is_flattened_in_order() {
        let inputs = EnvironmentInputs {
            device_environment: Some(serde_yaml::from_str("FOO: bar baz").unwrap()),
            device_info: Some(serde_yaml::from_str("[{board_id: '123'}]").unwrap()),
            job_environment: Some(serde_yaml::from_str("NET: {ports: [a, 2, true]}").unwrap()),
            job_id: "1234".into(),
            dispatcher_ip: "10.0.0.1".into(),
            job_tags: vec!["a".into(), "b".into()],
            device_type: Some("qemu".into()),
            ..Default::default()
        };
        assert_eq!(
            inputs.render().unwrap(),
            "export FOO='bar baz'\nexport LAVA_DEVICE_INFO_0_board_id=123\nexport NET_ports_0=a\nexport NET_ports_1=2\nexport NET_ports_2=1\nexport LAVA_JOB_ID=1234\nexport LAVA_DISPATCHER_IP=10.0.0.1\nexport LAVA_JOB_TAGS=a,b\nexport LAVA_DISPATCHER_PREFIX=''\nexport LAVA_DEVICE_TYPE=qemu\n"
        );
        let hostile = EnvironmentInputs {
            job_environment: Some(serde_yaml::from_str("'X;reboot': 1").unwrap()),
            ..Default::default()
        };
        assert!(hostile.render().is_err());
    }

    #[test]
    fn secrets_refuse_line_breaks() {
        let mut s = IndexMap::new();
        s.insert("TOKEN".to_string(), "abc def".to_string());
        assert_eq!(render_secrets(&s, None).unwrap(), "TOKEN=abc def\n");
        s.insert("X".to_string(), "a\nB=c".to_string());
        assert!(render_secrets(&s, None).is_err());
    }
}
