//! Strategies written as declarations: a section, a name, the ordered checks LAVA's
//! `accepts` makes (each with the reason it gives when it declines) and how the top-level
//! action is built. The checking logic lives here once; a strategy module only lists
//! what its method requires.
//!
//! ```
//! use lava_pipeline::{Declared, Device, Strategy};
//! # use lava_pipeline::{action_identity, Action};
//! # struct UBootAction;
//! # #[async_trait::async_trait]
//! # impl Action for UBootAction { action_identity!("uboot-action", "UBootAction", "d", "s"); }
//! let uboot = Declared::boot("u-boot", |_| Box::new(UBootAction))
//!     .method("u-boot")
//!     .param("commands", "commands not specified in boot parameters")
//!     .device_method("u-boot");
//! let device = Device::from_yaml("actions: {boot: {methods: {u-boot: {}}}}", None).unwrap();
//! let block: serde_yaml::Mapping = serde_yaml::from_str("{method: u-boot}").unwrap();
//! assert_eq!(
//!     uboot.accepts(&device, &block).unwrap_err(),
//!     "commands not specified in boot parameters"
//! );
//! ```

use crate::action::Action;
use crate::device::Device;
use crate::strategy::{Section, Strategy};
use serde_yaml::Mapping;

/// Builds a block's top-level action from its parameters.
type Build = Box<dyn Fn(&Mapping) -> Box<dyn Action> + Send + Sync>;
/// A check LAVA's strategy makes that fits no declared form.
type CustomCheck = Box<dyn Fn(&Device, &Mapping) -> Result<(), String> + Send + Sync>;

/// What a test block asks of the deployment and boot before it (LAVA's test strategy
/// class methods), by block parameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TestNeeds {
    /// The block needs an overlay.
    pub overlay: bool,
    /// The deployment must add `deployment_data`.
    pub deployment_data: bool,
    /// The block expects a shell on the device.
    pub shell: bool,
    /// The block needs character delays.
    pub character_delay: bool,
}

impl TestNeeds {
    /// A test shell: all of them.
    pub const SHELL: TestNeeds = TestNeeds {
        overlay: true,
        deployment_data: true,
        shell: true,
        character_delay: true,
    };
    /// Only an overlay.
    pub const OVERLAY: TestNeeds = TestNeeds {
        overlay: true,
        deployment_data: false,
        shell: false,
        character_delay: false,
    };
}

/// One step of `accepts`, in LAVA's order.
enum Check {
    /// The selecting key (`to`, `method`) is this value: `absent` when the key is missing
    /// (`other` when `None`), `other` when it holds anything else.
    Selects {
        value: String,
        absent: Option<String>,
        other: String,
    },
    /// The block has this key.
    Param { key: String, reason: String },
    /// The device lists this method in its section's `methods`.
    DeviceMethod { method: String, reason: String },
    /// The device does not list this method.
    NoDeviceMethod { method: String, reason: String },
    /// The device configuration has this top-level key.
    DeviceKey { key: String, reason: String },
    /// The device has `actions.<section>`.
    DeviceSection { reason: String },
    /// Anything else.
    Custom(CustomCheck),
}

/// A [`Strategy`] made of declared checks.
pub struct Declared {
    section: Section,
    name: String,
    priority: i32,
    checks: Vec<Check>,
    build: Build,
    uses_deployment_data: bool,
    needs: fn(&Mapping) -> TestNeeds,
}

impl Declared {
    /// A strategy of `section` named `name`, building its action with `build`.
    pub fn new(
        section: Section,
        name: impl Into<String>,
        build: impl Fn(&Mapping) -> Box<dyn Action> + Send + Sync + 'static,
    ) -> Self {
        Declared {
            section,
            name: name.into(),
            priority: 0,
            checks: Vec::new(),
            build: Box::new(build),
            uses_deployment_data: true,
            needs: |_| TestNeeds::default(),
        }
    }

    /// A deploy strategy (`to: name`).
    pub fn deploy(
        name: impl Into<String>,
        build: impl Fn(&Mapping) -> Box<dyn Action> + Send + Sync + 'static,
    ) -> Self {
        Self::new(Section::Deploy, name, build)
    }

    /// A boot strategy (`method: name`).
    pub fn boot(
        name: impl Into<String>,
        build: impl Fn(&Mapping) -> Box<dyn Action> + Send + Sync + 'static,
    ) -> Self {
        Self::new(Section::Boot, name, build)
    }

    /// A test strategy.
    pub fn test(
        name: impl Into<String>,
        build: impl Fn(&Mapping) -> Box<dyn Action> + Send + Sync + 'static,
    ) -> Self {
        Self::new(Section::Test, name, build)
    }

    fn push(mut self, check: Check) -> Self {
        self.checks.push(check);
        self
    }

    /// `to:` is `value`: LAVA's `"to" is not in deploy parameters` when missing and
    /// `"to" parameter is not "<value>"` otherwise.
    pub fn to(self, value: &str) -> Self {
        self.to_with(
            value,
            Some("\"to\" is not in deploy parameters"),
            &format!("\"to\" parameter is not \"{value}\""),
        )
    }

    /// `to:` is `value`, a missing key declined like any other value
    /// (`"to" parameter is not "<value>"`).
    pub fn to_only(self, value: &str) -> Self {
        self.to_with(value, None, &format!("\"to\" parameter is not \"{value}\""))
    }

    /// `to:` is `value`, with this strategy's own reasons.
    pub fn to_with(self, value: &str, absent: Option<&str>, other: &str) -> Self {
        self.push(Check::Selects {
            value: value.into(),
            absent: absent.map(str::to_string),
            other: other.into(),
        })
    }

    /// `method:` is `value` (`"method" was not "<value>"`).
    pub fn method(self, value: &str) -> Self {
        self.method_with(value, &format!("\"method\" was not \"{value}\""))
    }

    /// `method:` is `value`, with this strategy's own reason.
    pub fn method_with(self, value: &str, other: &str) -> Self {
        self.push(Check::Selects {
            value: value.into(),
            absent: None,
            other: other.into(),
        })
    }

    /// The block has `key`.
    pub fn param(self, key: &str, reason: &str) -> Self {
        self.push(Check::Param {
            key: key.into(),
            reason: reason.into(),
        })
    }

    /// The device lists `method` (LAVA's most common reason:
    /// `"<method>" was not in the device configuration <section> methods`).
    pub fn device_method(self, method: &str) -> Self {
        let reason = format!(
            "\"{method}\" was not in the device configuration {} methods",
            self.section.as_str()
        );
        self.device_method_with(method, &reason)
    }

    /// The device lists `method`, with this strategy's own reason.
    pub fn device_method_with(self, method: &str, reason: &str) -> Self {
        self.push(Check::DeviceMethod {
            method: method.into(),
            reason: reason.into(),
        })
    }

    /// The device does not list `method`.
    pub fn no_device_method(self, method: &str, reason: &str) -> Self {
        self.push(Check::NoDeviceMethod {
            method: method.into(),
            reason: reason.into(),
        })
    }

    /// The device configuration has `key` (`"<key>" is not in the device configuration`).
    pub fn device_key(self, key: &str) -> Self {
        let reason = format!("\"{key}\" is not in the device configuration");
        self.device_key_with(key, &reason)
    }

    /// The device configuration has `key`, with this strategy's own reason.
    pub fn device_key_with(self, key: &str, reason: &str) -> Self {
        self.push(Check::DeviceKey {
            key: key.into(),
            reason: reason.into(),
        })
    }

    /// The device has `actions.<section>`
    /// (`"<section>" is not in the device configuration actions`).
    pub fn device_section(self) -> Self {
        let reason = format!(
            "\"{}\" is not in the device configuration actions",
            self.section.as_str()
        );
        self.push(Check::DeviceSection { reason })
    }

    /// A check of LAVA's that fits no declared form.
    pub fn check(
        self,
        check: impl Fn(&Device, &Mapping) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.push(Check::Custom(Box::new(check)))
    }

    /// Higher wins among the accepting strategies.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// A deployment that ignores `deployment_data` (no OS involved).
    pub fn without_deployment_data(mut self) -> Self {
        self.uses_deployment_data = false;
        self
    }

    /// What a test block of this strategy asks of the deployment and boot.
    pub fn needs(mut self, needs: fn(&Mapping) -> TestNeeds) -> Self {
        self.needs = needs;
        self
    }

    fn selecting_key(&self) -> &'static str {
        match self.section {
            Section::Deploy => "to",
            Section::Boot | Section::Test => "method",
        }
    }

    fn methods<'d>(&self, device: &'d Device) -> Option<&'d Mapping> {
        match self.section {
            Section::Deploy => device.deploy_methods(),
            Section::Boot => device.boot_methods(),
            Section::Test => None,
        }
    }

    fn run_check(&self, check: &Check, device: &Device, params: &Mapping) -> Result<(), String> {
        let lists = |method: &str| self.methods(device).is_some_and(|m| m.contains_key(method));
        let decline = |ok: bool, reason: &str| if ok { Ok(()) } else { Err(reason.to_string()) };
        match check {
            Check::Selects {
                value,
                absent,
                other,
            } => match params.get(self.selecting_key()) {
                None => Err(absent.as_ref().unwrap_or(other).clone()),
                Some(found) => decline(found.as_str() == Some(value.as_str()), other),
            },
            Check::Param { key, reason } => decline(params.contains_key(key.as_str()), reason),
            Check::DeviceMethod { method, reason } => decline(lists(method), reason),
            Check::NoDeviceMethod { method, reason } => decline(!lists(method), reason),
            Check::DeviceKey { key, reason } => decline(device.has(key), reason),
            Check::DeviceSection { reason } => decline(
                device.lookup(&["actions", self.section.as_str()]).is_some(),
                reason,
            ),
            Check::Custom(check) => check(device, params),
        }
    }
}

impl Strategy for Declared {
    fn section(&self) -> Section {
        self.section
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn priority(&self) -> i32 {
        self.priority
    }
    fn accepts(&self, device: &Device, params: &Mapping) -> Result<(), String> {
        self.checks
            .iter()
            .try_for_each(|check| self.run_check(check, device, params))
    }
    fn action(&self, params: &Mapping) -> Box<dyn Action> {
        (self.build)(params)
    }
    fn uses_deployment_data(&self) -> bool {
        self.uses_deployment_data
    }
    fn needs_overlay(&self, params: &Mapping) -> bool {
        (self.needs)(params).overlay
    }
    fn needs_deployment_data(&self, params: &Mapping) -> bool {
        (self.needs)(params).deployment_data
    }
    fn has_shell(&self, params: &Mapping) -> bool {
        (self.needs)(params).shell
    }
    fn needs_character_delay(&self, params: &Mapping) -> bool {
        (self.needs)(params).character_delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action_identity;

    struct Nothing;
    #[async_trait::async_trait]
    impl Action for Nothing {
        action_identity!("nothing", "Nothing", "nothing", "nothing");
    }

    fn block(text: &str) -> Mapping {
        serde_yaml::from_str(text).unwrap()
    }

    fn device(text: &str) -> Device {
        Device::from_yaml(text, None).unwrap()
    }

    #[test]
    fn the_first_failing_check_gives_its_reason() {
        let tftp = Declared::deploy("tftp", |_| Box::new(Nothing))
            .to("tftp")
            .device_method_with(
                "tftp",
                "\"tftp\" was not in the device configuration deploy methods\"",
            );
        let with = device("actions: {deploy: {methods: {tftp: }}}");
        let without = device("actions: {deploy: {methods: {nfs: }}}");
        assert_eq!(
            tftp.accepts(&with, &block("{os: debian}")).unwrap_err(),
            "\"to\" is not in deploy parameters"
        );
        assert_eq!(
            tftp.accepts(&with, &block("{to: nfs}")).unwrap_err(),
            "\"to\" parameter is not \"tftp\""
        );
        assert_eq!(
            tftp.accepts(&without, &block("{to: tftp}")).unwrap_err(),
            "\"tftp\" was not in the device configuration deploy methods\""
        );
        assert_eq!(tftp.accepts(&with, &block("{to: tftp}")), Ok(()));
    }

    #[test]
    fn standard_reasons_follow_the_section() {
        let minimal = Declared::boot("minimal", |_| Box::new(Nothing))
            .device_method("minimal")
            .method("minimal")
            .device_key("board_id")
            .device_section();
        let bare = device("actions: {boot: {methods: {}}}");
        assert_eq!(
            minimal
                .accepts(&bare, &block("{method: minimal}"))
                .unwrap_err(),
            "\"minimal\" was not in the device configuration boot methods"
        );
        let listed = device("actions: {boot: {methods: {minimal: }}}");
        assert_eq!(
            minimal.accepts(&listed, &block("{}")).unwrap_err(),
            "\"method\" was not \"minimal\""
        );
        assert_eq!(
            minimal
                .accepts(&listed, &block("{method: minimal}"))
                .unwrap_err(),
            "\"board_id\" is not in the device configuration"
        );
        let full = device("board_id: x\nactions: {boot: {methods: {minimal: }}}");
        assert_eq!(minimal.accepts(&full, &block("{method: minimal}")), Ok(()));
    }

    #[test]
    fn custom_checks_and_test_needs() {
        let shell = Declared::test("lava-test-shell", |_| Box::new(Nothing))
            .param("definitions", "\"definitions\" not in parameters")
            .check(|_, params| {
                if params.contains_key("broken") {
                    Err("broken".into())
                } else {
                    Ok(())
                }
            })
            .needs(|_| TestNeeds::SHELL)
            .priority(3);
        let d = device("{}");
        assert_eq!(
            shell.accepts(&d, &block("{definitions: [], broken: 1}")),
            Err("broken".into())
        );
        assert!(shell.accepts(&d, &block("{definitions: []}")).is_ok());
        assert!(shell.needs_overlay(&Mapping::new()) && shell.has_shell(&Mapping::new()));
        assert_eq!(Strategy::priority(&shell), 3);
        assert_eq!(shell.action(&Mapping::new()).name(), "nothing");
    }
}
