//! The device configuration: the rendered YAML, typed for the keys the dispatcher reads, with
//! the raw mapping kept for the keys strategies read themselves.

use crate::error::DeviceError;
use crate::render::Renderer;
use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize};
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A device command: LAVA accepts one string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CommandList {
    /// A single command string.
    One(String),
    /// A list of commands, run in order.
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for CommandList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CommandVisitor;
        impl<'de> serde::de::Visitor<'de> for CommandVisitor {
            type Value = CommandList;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a command string or a list of command strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CommandList, E> {
                Ok(CommandList::One(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<CommandList, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    out.push(item);
                }
                Ok(CommandList::Many(out))
            }
        }
        deserializer.deserialize_any(CommandVisitor)
    }
}

impl CommandList {
    /// The commands, one per element.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            CommandList::One(s) => vec![s.clone()],
            CommandList::Many(v) => v.clone(),
        }
    }

    /// True when there is no command to run.
    pub fn is_empty(&self) -> bool {
        match self {
            CommandList::One(s) => s.is_empty(),
            CommandList::Many(v) => v.is_empty(),
        }
    }
}

/// One entry of `commands.connections`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionCommand {
    /// The shell command that opens this connection (LAVA's `connect:` key).
    #[serde(default)]
    pub connect: Option<String>,
    /// The connection's roles, e.g. `primary` or `telnet` (LAVA's `tags:` key).
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
}

/// One entry of `commands.users`: a named command pair the job can call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserCommand {
    /// The command run when the job calls this user command (LAVA's `do:` key).
    #[serde(rename = "do")]
    pub do_: CommandList,
    /// The command that reverts `do` at the end of the job (LAVA's `undo:` key).
    #[serde(default)]
    pub undo: Option<CommandList>,
}

/// The `commands` section: how the worker reaches and powers the device.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Commands {
    /// The serial console command, used when no `connections` are listed (LAVA's `connect:` key).
    #[serde(default)]
    pub connect: Option<String>,
    /// Named console connections, name → command and tags (LAVA's `connections:` key).
    #[serde(default, deserialize_with = "null_default")]
    pub connections: IndexMap<String, ConnectionCommand>,
    /// Power-cycles the device (LAVA's `hard_reset:` key).
    #[serde(default)]
    pub hard_reset: Option<CommandList>,
    /// Reboots the running device without a power cycle (LAVA's `soft_reboot:` key).
    #[serde(default)]
    pub soft_reboot: Option<CommandList>,
    /// Switches the device's power on (LAVA's `power_on:` key).
    #[serde(default)]
    pub power_on: Option<CommandList>,
    /// Switches the device's power off (LAVA's `power_off:` key).
    #[serde(default)]
    pub power_off: Option<CommandList>,
    /// Run before each power command (LAVA's `pre_power_command:` key).
    #[serde(default)]
    pub pre_power_command: Option<CommandList>,
    /// Run before the OS is booted, e.g. to switch a mux (LAVA's `pre_os_command:` key).
    #[serde(default)]
    pub pre_os_command: Option<CommandList>,
    /// Puts the device into recovery mode (LAVA's `recovery_mode:` key).
    #[serde(default)]
    pub recovery_mode: Option<CommandList>,
    /// Takes the device out of recovery mode (LAVA's `recovery_exit:` key).
    #[serde(default)]
    pub recovery_exit: Option<CommandList>,
    /// Named command pairs a job may call, name → `do`/`undo` (LAVA's `users:` key).
    #[serde(default, deserialize_with = "null_default")]
    pub users: IndexMap<String, UserCommand>,
    /// The connection every job must use, as written (LAVA's `must_use_connection:` key).
    #[serde(default)]
    pub must_use_connection: Option<Value>,
}

/// `actions.deploy` or `actions.boot`: the methods the device supports (method name →
/// its parameters, often null), its connections and section parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActionSection {
    /// Supported methods, method name → its settings, often null (LAVA's `methods:` key).
    #[serde(default, deserialize_with = "null_default")]
    pub methods: IndexMap<String, Value>,
    /// Connections available in this section, name → settings (LAVA's `connections:` key).
    #[serde(default, deserialize_with = "null_default")]
    pub connections: IndexMap<String, Value>,
    /// Parameters common to every method of the section (LAVA's `parameters:` key).
    #[serde(default, deserialize_with = "null_default")]
    pub parameters: Mapping,
}

impl ActionSection {
    /// Whether `method` is listed.
    pub fn has_method(&self, method: &str) -> bool {
        self.methods.contains_key(method)
    }

    /// `methods.<method>.parameters`, when that is a mapping.
    pub fn method_parameters(&self, method: &str) -> Option<&Mapping> {
        self.methods
            .get(method)?
            .as_mapping()?
            .get("parameters")?
            .as_mapping()
    }
}

/// The `actions` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Actions {
    /// Deploy methods the device supports (`actions.deploy`).
    #[serde(default, deserialize_with = "null_default")]
    pub deploy: ActionSection,
    /// Boot methods the device supports (`actions.boot`).
    #[serde(default, deserialize_with = "null_default")]
    pub boot: ActionSection,
    /// The `actions.test` section as written, when present.
    #[serde(default)]
    pub test: Option<Value>,
}

/// A timeout as LAVA writes it: any of days, hours, minutes, seconds (summed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeout {
    /// Whole days (LAVA's `days:` key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u64>,
    /// Hours (LAVA's `hours:` key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<u64>,
    /// Minutes (LAVA's `minutes:` key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minutes: Option<u64>,
    /// Seconds (LAVA's `seconds:` key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
    /// When true, a timeout of this action is not a failure (LAVA's `skip:` key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<bool>,
}

impl Timeout {
    /// The total duration.
    pub fn duration(&self) -> Duration {
        let secs = self.days.unwrap_or(0) * 86_400
            + self.hours.unwrap_or(0) * 3_600
            + self.minutes.unwrap_or(0) * 60
            + self.seconds.unwrap_or(0);
        Duration::from_secs(secs)
    }
}

/// The `timeouts` section: device defaults for named actions and connections.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceTimeouts {
    /// Action name → its default timeout (`timeouts.actions`).
    #[serde(default, deserialize_with = "null_default")]
    pub actions: IndexMap<String, Timeout>,
    /// Connection name → its default timeout (`timeouts.connections`).
    #[serde(default, deserialize_with = "null_default")]
    pub connections: IndexMap<String, Timeout>,
}

/// `character_delays`: milliseconds between characters sent in each section.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharacterDelays {
    /// Delay in the deploy section, in milliseconds (`character_delays.deploy`).
    #[serde(default)]
    pub deploy: Option<u64>,
    /// Delay in the boot section, in milliseconds (`character_delays.boot`).
    #[serde(default)]
    pub boot: Option<u64>,
    /// Delay in the test section, in milliseconds (`character_delays.test`).
    #[serde(default)]
    pub test: Option<u64>,
}

/// The typed part of a device configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Typed {
    #[serde(default, deserialize_with = "scalar_string")]
    hostname: Option<String>,
    #[serde(default, deserialize_with = "scalar_string")]
    devicetype: Option<String>,
    #[serde(default, deserialize_with = "scalar_string")]
    device_type: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    commands: Commands,
    #[serde(default, deserialize_with = "null_default")]
    actions: Actions,
    #[serde(default, deserialize_with = "null_default")]
    timeouts: DeviceTimeouts,
    #[serde(default, deserialize_with = "null_default")]
    parameters: Mapping,
    #[serde(default, deserialize_with = "null_default")]
    constants: Mapping,
    #[serde(default, deserialize_with = "null_default")]
    character_delays: CharacterDelays,
    #[serde(default, deserialize_with = "scalar_string")]
    power_state: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    available_architectures: Vec<String>,
}

/// A loaded device configuration.
///
/// The fields are the keys the dispatcher itself uses; [`DeviceConfig::raw`] is the whole
/// mapping (with LAVA's load-time defaults `power_state: off` and `dynamic_data: {}`) for
/// the keys that deploy and boot strategies read on their own.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceConfig {
    /// `hostname` (LAVA exports it as `LAVA_DEVICE_HOSTNAME`).
    pub hostname: Option<String>,
    /// `devicetype`, or the older `device_type`.
    pub device_type: Option<String>,
    /// The `commands` section: console and power commands.
    pub commands: Commands,
    /// The `actions` section: supported deploy and boot methods.
    pub actions: Actions,
    /// The `timeouts` section: per-action and per-connection defaults.
    pub timeouts: DeviceTimeouts,
    /// The top-level `parameters` mapping (interfaces, media, image addresses...).
    pub parameters: Mapping,
    /// The `constants` mapping read with `get_constant` (prompts, shutdown messages...).
    pub constants: Mapping,
    /// The `character_delays` section.
    pub character_delays: CharacterDelays,
    /// `power_state`, `off` unless the configuration says otherwise.
    pub power_state: String,
    /// CPU architectures the device can run (LAVA's `available_architectures:` key).
    pub available_architectures: Vec<String>,
    raw: Mapping,
    source: PathBuf,
}

impl Default for DeviceConfig {
    /// An empty configuration with LAVA's load-time defaults (what LAVA makes of `{}`).
    fn default() -> Self {
        DeviceConfig::from_value(Value::Mapping(Mapping::new()), "<device>")
            .expect("an empty mapping is a valid device configuration")
    }
}

impl DeviceConfig {
    /// Load a rendered device configuration (YAML) from `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<DeviceConfig, DeviceError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| DeviceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        DeviceConfig::from_yaml_str(&text, path)
    }

    /// Parse a device configuration from YAML text; `origin` names it in errors.
    pub fn from_yaml_str(
        text: &str,
        origin: impl AsRef<Path>,
    ) -> Result<DeviceConfig, DeviceError> {
        let origin = origin.as_ref();
        let value: Value = crate::yaml::parse(text).map_err(|err| DeviceError::Parse {
            path: origin.to_path_buf(),
            message: err.to_string(),
        })?;
        DeviceConfig::from_value(value, origin)
    }

    /// Build a device configuration from an already parsed YAML value.
    pub fn from_value(value: Value, origin: impl AsRef<Path>) -> Result<DeviceConfig, DeviceError> {
        let path = origin.as_ref().to_path_buf();
        let mut raw = match value {
            Value::Null => return Err(DeviceError::Empty { path }),
            Value::Mapping(map) => map,
            Value::Tagged(tagged) => {
                return DeviceConfig::from_value(tagged.value, path);
            }
            other => {
                return Err(DeviceError::NotMapping {
                    path,
                    found: yaml_kind(&other),
                });
            }
        };
        if !raw.contains_key("power_state") {
            raw.insert("power_state".into(), "off".into());
        }
        if !raw.contains_key("dynamic_data") {
            raw.insert("dynamic_data".into(), Value::Mapping(Mapping::new()));
        }
        // LAVA's `NewDevice` loads any mapping as it is: `constants`, `parameters` and
        // `timeouts` are required only where they are read (`get_constant` says which
        // constant is missing). The typed keys below must have their documented shapes.
        // Straight from the value: a device is loaded for every job, so it is not parsed
        // twice. Only a device that fails is deserialized again from text, which makes
        // serde_yaml name the key path in its message.
        let typed: Typed = match serde_yaml::from_value(Value::Mapping(raw.clone())) {
            Ok(typed) => typed,
            Err(err) => return Err(invalid_device(&raw, &path, err)),
        };
        Ok(DeviceConfig {
            hostname: typed.hostname,
            device_type: typed.devicetype.or(typed.device_type),
            commands: typed.commands,
            actions: typed.actions,
            timeouts: typed.timeouts,
            parameters: typed.parameters,
            constants: typed.constants,
            character_delays: typed.character_delays,
            power_state: typed.power_state.unwrap_or_else(|| "off".to_string()),
            available_architectures: typed.available_architectures,
            raw,
            source: path,
        })
    }

    /// The whole configuration mapping, with the load-time defaults.
    pub fn raw(&self) -> &Mapping {
        &self.raw
    }

    /// A top-level key of the raw mapping.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.raw.get(key)
    }

    /// Follow a key path through nested mappings: `config.lookup(&["actions", "boot"])`.
    pub fn lookup(&self, keys: &[&str]) -> Option<&Value> {
        let (first, rest) = keys.split_first()?;
        let mut value = self.raw.get(*first)?;
        for key in rest {
            value = value.as_mapping()?.get(*key)?;
        }
        Some(value)
    }

    /// The same configuration, naming `source` in its errors.
    pub fn with_source(mut self, source: impl Into<PathBuf>) -> Self {
        self.source = source.into();
        self
    }

    /// [`DeviceConfig::lookup`] of a string value.
    pub fn lookup_str(&self, keys: &[&str]) -> Option<&str> {
        self.lookup(keys).and_then(Value::as_str)
    }

    /// Whether `key` is present at the top level (even as null).
    pub fn has(&self, key: &str) -> bool {
        self.raw.contains_key(key)
    }

    /// The file (or name) this configuration was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// `dynamic_data` (an empty mapping unless the configuration has one).
    pub fn dynamic_data(&self) -> Option<&Mapping> {
        self.raw.get("dynamic_data")?.as_mapping()
    }

    /// LAVA's `get_constant`: `constants[prefix][key]`, or `constants[key]` without a prefix
    /// (an empty prefix counts as none), with LAVA's messages when the section or the
    /// constant is missing.
    pub fn get_constant(&self, key: &str, prefix: Option<&str>) -> Result<&Value, DeviceError> {
        if !self.raw.contains_key("constants") {
            return Err(DeviceError::NoConstants {
                path: self.source.clone(),
            });
        }
        let prefix = prefix.filter(|p| !p.is_empty());
        let found = match prefix {
            Some(prefix) => self
                .constants
                .get(prefix)
                .and_then(Value::as_mapping)
                .and_then(|m| m.get(key)),
            None => self.constants.get(key),
        };
        found.ok_or_else(|| DeviceError::MissingConstant {
            path: self.source.clone(),
            prefix: prefix.map(str::to_string),
            key: key.to_string(),
        })
    }

    /// Whether the configuration has a `constants` section (LAVA reads the device's retry
    /// constants only then).
    pub fn has_constants(&self) -> bool {
        self.raw.contains_key("constants")
    }

    /// LAVA's `connect_command`: the deprecated `commands.connect`, else the `connect` of the
    /// connection tagged `primary` in `commands.connections` (empty when an entry before it
    /// has no `connect`, or none is primary). A device without `commands` is a
    /// configuration error, as in LAVA.
    pub fn connect_command(&self) -> Result<String, DeviceError> {
        if !self.raw.contains_key("commands") {
            return Err(DeviceError::NoCommands {
                path: self.source.clone(),
            });
        }
        if let Some(connect) = &self.commands.connect {
            return Ok(connect.clone());
        }
        for conn in self.commands.connections.values() {
            let Some(connect) = &conn.connect else {
                return Ok(String::new());
            };
            if conn.tags.iter().any(|t| t == "primary") {
                return Ok(connect.clone());
            }
        }
        Ok(String::new())
    }

    /// LAVA's `get_constant(..., missing_ok=True)`: `None` when the constant is absent; the
    /// `constants` section itself is still required.
    pub fn optional_constant(
        &self,
        key: &str,
        prefix: Option<&str>,
    ) -> Result<Option<&Value>, DeviceError> {
        match self.get_constant(key, prefix) {
            Ok(value) => Ok(Some(value)),
            Err(DeviceError::MissingConstant { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// `character_delays.<section>` in milliseconds (0 when unset or for another section).
    pub fn character_delay_ms(&self, section: &str) -> u64 {
        let delay = match section {
            "deploy" => self.character_delays.deploy,
            "boot" => self.character_delays.boot,
            "test" => self.character_delays.test,
            _ => None,
        };
        delay.unwrap_or(0)
    }

    /// `constants.spawn_maxread`, the console's read size, as a number (LAVA's templates
    /// write it as a string, `'4092'`); `None` when unset or not a whole number.
    pub fn spawn_maxread(&self) -> Option<usize> {
        match self.constants.get("spawn_maxread")? {
            Value::Number(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// `parameters.<key>`, the device parameters LAVA's strategies read (`media`,
    /// `interfaces`, `local_overlay`, kernel address blocks...).
    pub fn parameter(&self, key: &str) -> Option<&Value> {
        self.parameters.get(key)
    }

    /// `commands.<name>`, for the commands an action names at run time (`hard_reset`,
    /// `power_on`, `power_off`, `soft_reboot`, `pre_power_command`, `pre_os_command`,
    /// `recovery_mode`, `recovery_exit`); `None` when unset or not one of them.
    pub fn command(&self, name: &str) -> Option<&CommandList> {
        let commands = &self.commands;
        match name {
            "hard_reset" => commands.hard_reset.as_ref(),
            "soft_reboot" => commands.soft_reboot.as_ref(),
            "power_on" => commands.power_on.as_ref(),
            "power_off" => commands.power_off.as_ref(),
            "pre_power_command" => commands.pre_power_command.as_ref(),
            "pre_os_command" => commands.pre_os_command.as_ref(),
            "recovery_mode" => commands.recovery_mode.as_ref(),
            "recovery_exit" => commands.recovery_exit.as_ref(),
            _ => None,
        }
    }

    /// Whether `commands.<name>` is set and not empty (LAVA's truthiness of the value).
    pub fn has_command(&self, name: &str) -> bool {
        self.command(name).is_some_and(|c| !c.is_empty())
    }

    /// `commands.pre_power_command` as a list (empty when absent).
    pub fn pre_power_command(&self) -> Vec<String> {
        command_vec(&self.commands.pre_power_command)
    }

    /// `commands.pre_os_command` as a list (empty when absent).
    pub fn pre_os_command(&self) -> Vec<String> {
        command_vec(&self.commands.pre_os_command)
    }

    /// `commands.hard_reset` as a list (empty when absent).
    pub fn hard_reset_command(&self) -> Vec<String> {
        command_vec(&self.commands.hard_reset)
    }

    /// `commands.soft_reboot` as a list (empty when absent).
    pub fn soft_reboot_command(&self) -> Vec<String> {
        command_vec(&self.commands.soft_reboot)
    }

    /// `commands.power_on` as a list (empty when absent).
    pub fn power_on_command(&self) -> Vec<String> {
        command_vec(&self.commands.power_on)
    }

    /// `commands.power_off` as a list (empty when absent).
    pub fn power_off_command(&self) -> Vec<String> {
        command_vec(&self.commands.power_off)
    }

    /// `recovery_mode` / `recovery_exit` and the other commands by name, as a list (empty
    /// when absent).
    pub fn command_vec(&self, name: &str) -> Vec<String> {
        self.command(name)
            .map(CommandList::to_vec)
            .unwrap_or_default()
    }

    /// Serialize the raw mapping back to YAML.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(&self.raw).unwrap_or_default()
    }
}

fn command_vec(command: &Option<CommandList>) -> Vec<String> {
    command
        .as_ref()
        .map(CommandList::to_vec)
        .unwrap_or_default()
}

/// A short name for the kind of a YAML value, for error messages.
pub(crate) fn yaml_kind(value: &Value) -> &'static str {
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

/// Deserialize a null as the type's default (LAVA templates often write `key:` with nothing).
fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A scalar (string, number or boolean) as a string; null as `None`.
fn scalar_string<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    use serde::de::Error;
    match Value::deserialize(deserializer)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        other => Err(D::Error::custom(format!(
            "expected a string, found {}",
            yaml_kind(&other)
        ))),
    }
}

/// Render the device dictionary at `dictionary` with `renderer` and `context`, then load the
/// result as a device configuration.
pub fn render_device(
    renderer: &Renderer,
    dictionary: &Path,
    context: &Mapping,
) -> Result<DeviceConfig, DeviceError> {
    let text = renderer.render_file(dictionary, context)?;
    DeviceConfig::from_yaml_str(&text, dictionary)
}

/// What `lava-run --device FILE` accepts: a device dictionary (`*.jinja2`, rendered with
/// `renderer` and the job's `context`) or an already rendered configuration (YAML).
pub fn load_device(
    path: &Path,
    renderer: &Renderer,
    context: &Mapping,
) -> Result<DeviceConfig, DeviceError> {
    if is_dictionary(path) {
        render_device(renderer, path, context)
    } else {
        DeviceConfig::load(path)
    }
}

/// Whether `path` names a device dictionary (a `.jinja2` file) rather than rendered YAML.
pub fn is_dictionary(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "jinja2")
}

/// The error of a device whose typed keys have the wrong shape, with the key path that
/// serde_yaml names when it reads the mapping from text (`commands.hard_reset: invalid type
/// ...`); `from_value_error` is the error without a path, used if the text reads cleanly.
fn invalid_device(raw: &Mapping, path: &Path, from_value_error: serde_yaml::Error) -> DeviceError {
    let reread = serde_yaml::to_string(raw)
        .map_err(|err| err.to_string())
        .and_then(|text| {
            serde_yaml::from_str::<Typed>(&text)
                .map(|_| ())
                .map_err(|err| err.to_string())
        });
    let message = match reread {
        Err(message) => message,
        Ok(()) => from_value_error.to_string(),
    };
    // serde_yaml prefixes the key path ("commands.hard_reset: invalid type ...").
    let (key, message) = match message.split_once(": ") {
        Some((key, rest)) if !key.contains(' ') => (key.to_string(), rest.to_string()),
        _ => ("<root>".to_string(), message),
    };
    DeviceError::Invalid {
        path: path.to_path_buf(),
        key,
        message,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_typed_key_of_the_wrong_shape_is_refused_naming_the_file_and_key_path() {
        let err = DeviceConfig::from_yaml_str(
            "commands:\n  hard_reset: {not: a command}\n",
            "qemu01.yaml",
        )
        .unwrap_err();
        let DeviceError::Invalid { path, key, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(path, Path::new("qemu01.yaml"));
        assert_eq!(key, "commands.hard_reset", "{err}");
        assert!(
            err.to_string()
                .starts_with("qemu01.yaml: invalid value for 'commands.hard_reset': ")
        );
    }

    use super::*;

    const MINIMAL: &str = "\
constants: {failure_retry: 1, posix: {lava_test_sh_cmd: /bin/sh}}
parameters:
timeouts:
  actions: {power-off: {seconds: 10}}
  connections: {lava-test-shell: {minutes: 2}}
";

    fn parse(text: &str) -> Result<DeviceConfig, DeviceError> {
        DeviceConfig::from_yaml_str(text, "dev.yaml")
    }

    #[test]
    fn defaults_after_load() {
        let dev = parse(MINIMAL).unwrap();
        assert_eq!(dev.power_state, "off");
        assert_eq!(dev.dynamic_data().map(Mapping::len), Some(0));
        assert_eq!(dev.get("power_state").and_then(Value::as_str), Some("off"));
        assert_eq!(
            dev.timeouts.actions["power-off"].duration(),
            Duration::from_secs(10)
        );
        assert_eq!(
            dev.constants["posix"]["lava_test_sh_cmd"].as_str(),
            Some("/bin/sh")
        );
        let err = dev.get_constant("nope", Some("posix")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Constant posix,nope does not exist in the device config 'constants' section."
        );
        let err = dev.get_constant("nope", Some("")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Constant nope does not exist in the device config 'constants' section."
        );
        assert_eq!(dev.optional_constant("nope", Some("posix")).unwrap(), None);
        assert_eq!(dev.character_delay_ms("boot"), 0);
        assert_eq!(dev.spawn_maxread(), None);
        let dev = parse(&format!("{MINIMAL}character_delays: {{boot: 500}}\n")).unwrap();
        assert_eq!(dev.character_delay_ms("boot"), 500);
        assert_eq!(dev.character_delay_ms("test"), 0);
        let dev = parse("constants: {spawn_maxread: '4092'}\n").unwrap();
        assert_eq!(dev.spawn_maxread(), Some(4092));
    }

    #[test]
    fn commands_are_str_or_list() {
        let text = format!(
            "{MINIMAL}commands:\n  connect: telnet x 1\n  hard_reset: [a, b]\n  power_off: c\n"
        );
        let dev = parse(&text).unwrap();
        assert_eq!(dev.hard_reset_command(), ["a", "b"]);
        assert_eq!(dev.power_off_command(), ["c"]);
        assert!(dev.power_on_command().is_empty());
        assert_eq!(dev.connect_command().unwrap(), "telnet x 1");
        assert!(dev.has_command("hard_reset"));
        assert!(!dev.has_command("soft_reboot"));
        assert_eq!(dev.command_vec("power_off"), ["c"]);
    }

    #[test]
    fn primary_connection_is_the_connect_command() {
        let text = format!(
            "{MINIMAL}commands:\n  connections:\n    uart1: {{connect: one, tags: [secondary]}}\n    uart0: {{connect: zero, tags: [primary, telnet]}}\n"
        );
        assert_eq!(parse(&text).unwrap().connect_command().unwrap(), "zero");
    }

    #[test]
    fn bad_configurations_are_named() {
        let err = parse("").unwrap_err();
        assert!(matches!(err, DeviceError::Empty { .. }), "{err}");
        let err = parse("- a\n- b\n").unwrap_err();
        assert!(err.to_string().contains("dev.yaml"), "{err}");
        assert!(matches!(err, DeviceError::NotMapping { .. }));
        let err = parse("a: [b\n").unwrap_err();
        assert!(
            err.to_string().starts_with("dev.yaml could not be parsed"),
            "{err}"
        );
        let text = format!("{MINIMAL}commands:\n  hard_reset: {{a: b}}\n");
        let err = parse(&text).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("dev.yaml: invalid value for 'commands.hard_reset'"),
            "{err}"
        );
        let err = parse("timeouts: {actions: {power-off: 10}}\n").unwrap_err();
        assert!(
            err.to_string().contains("timeouts.actions.power-off"),
            "{err}"
        );
    }

    #[test]
    fn loads_what_lava_loads() {
        // LAVA's NewDevice takes any mapping; sections are required where they are read.
        let dev = parse("{}").unwrap();
        assert_eq!(dev.power_state, "off");
        assert_eq!(dev, DeviceConfig::default().with_source("dev.yaml"));
        let err = dev.get_constant("failure_retry", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "constants section not present in the device config."
        );
        assert!(dev.optional_constant("failure_retry", None).is_err());
        let err = dev.connect_command().unwrap_err();
        assert_eq!(
            err.to_string(),
            "commands section not present in the device config."
        );
        let dev = parse("actions: {boot: {methods: {qemu: }}}\n").unwrap();
        assert!(dev.actions.boot.has_method("qemu"));
        assert!(dev.timeouts.actions.is_empty());
    }

    #[test]
    fn methods_with_parameters() {
        let actions = r#"
actions:
  deploy:
    methods:
      tftp:
      image:
        parameters: {guest: {size: 512}}
  boot:
    connections: {serial: }
    methods:
      qemu:
        parameters: {command: qemu-system-x86_64}
"#;
        let text = format!("{MINIMAL}{actions}");
        let dev = parse(&text).unwrap();
        assert!(dev.actions.deploy.has_method("tftp"));
        assert!(dev.actions.deploy.method_parameters("image").is_some());
        let qemu = dev.actions.boot.method_parameters("qemu").unwrap();
        assert_eq!(
            qemu.get("command").and_then(Value::as_str),
            Some("qemu-system-x86_64")
        );
        assert!(dev.actions.boot.connections.contains_key("serial"));
        assert_eq!(
            dev.lookup(&[
                "actions",
                "boot",
                "methods",
                "qemu",
                "parameters",
                "command"
            ])
            .and_then(Value::as_str),
            Some("qemu-system-x86_64")
        );
    }
}
