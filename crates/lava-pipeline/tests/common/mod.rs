#![allow(dead_code)] // each test crate uses a different part of these helpers
//! A tiny registry of our own for the integration tests (the real strategies live in
//! lava-actions).

use lava_pipeline::{
    Action, Device, FixedActions, PipelineBuilder, Section, Strategy, StrategyRegistry,
    action_identity,
};
use serde_yaml::Mapping;

pub struct Leaf(pub &'static str);

#[lava_pipeline::async_trait]
impl Action for Leaf {
    fn name(&self) -> &str {
        self.0
    }
    fn class_name(&self) -> &str {
        "Leaf"
    }
    fn description(&self) -> &str {
        "a leaf"
    }
    fn summary(&self) -> &str {
        "a leaf"
    }
}

pub struct RetryBlock(pub &'static str, pub Vec<&'static str>);

#[lava_pipeline::async_trait]
impl Action for RetryBlock {
    fn name(&self) -> &str {
        self.0
    }
    fn class_name(&self) -> &str {
        "RetryBlock"
    }
    fn description(&self) -> &str {
        "a retry block"
    }
    fn summary(&self) -> &str {
        "a retry block"
    }
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> lava_pipeline::LavaResult<()> {
        for child in &self.1 {
            pipeline.add(Leaf(child))?;
        }
        Ok(())
    }
}

pub struct Finalize;

#[lava_pipeline::async_trait]
impl Action for Finalize {
    action_identity!(
        "finalize",
        "FinalizeAction",
        "finish the process",
        "finalize the job"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> lava_pipeline::LavaResult<()> {
        pipeline.add(Leaf("power-off"))?;
        pipeline.add(Leaf("read-feedback"))
    }
}

pub struct Fixed;

impl FixedActions for Fixed {
    fn finalize(&self) -> Box<dyn Action> {
        Box::new(Finalize)
    }
    fn command(&self, _block: &Mapping) -> Box<dyn Action> {
        Box::new(Leaf("user-command"))
    }
}

/// A strategy serving one `to:`/`method:` value, accepted when the device lists `method`.
pub struct Simple {
    pub section: Section,
    pub value: &'static str,
    pub device_method: &'static str,
    pub top: &'static str,
    pub children: Vec<&'static str>,
}

impl Strategy for Simple {
    fn section(&self) -> Section {
        self.section
    }
    fn name(&self) -> &str {
        self.value
    }
    fn accepts(&self, device: &Device, params: &Mapping) -> Result<(), String> {
        if self.section == Section::Test {
            return if params.contains_key("definitions") {
                Ok(())
            } else {
                Err("no definitions".into())
            };
        }
        let key = if self.section == Section::Deploy {
            "to"
        } else {
            "method"
        };
        if params.get(key).and_then(|v| v.as_str()) != Some(self.value) {
            return Err(format!("'{key}' is not '{}'", self.value));
        }
        let listed = match self.section {
            Section::Deploy => device.has_deploy_method(self.device_method),
            _ => device.has_boot_method(self.device_method),
        };
        if !listed {
            return Err(format!(
                "'{}' not in the device configuration methods",
                self.device_method
            ));
        }
        Ok(())
    }
    fn action(&self, _params: &Mapping) -> Box<dyn Action> {
        Box::new(RetryBlock(self.top, self.children.clone()))
    }
    fn needs_overlay(&self, _params: &Mapping) -> bool {
        true
    }
}

pub fn registry() -> StrategyRegistry {
    let mut r = StrategyRegistry::new();
    r.register(Simple {
        section: Section::Deploy,
        value: "tmpfs",
        device_method: "image",
        top: "deployimages",
        children: vec!["download-retry"],
    });
    r.register(Simple {
        section: Section::Boot,
        value: "qemu",
        device_method: "qemu",
        top: "boot-image-retry",
        children: vec!["boot-qemu-image", "auto-login-action"],
    });
    r.register(Simple {
        section: Section::Boot,
        value: "minimal",
        device_method: "minimal",
        top: "minimal-boot",
        children: vec!["connect-device"],
    });
    r.register(Simple {
        section: Section::Test,
        value: "lava-test-shell",
        device_method: "",
        top: "lava-test-retry",
        children: vec!["lava-test-shell"],
    });
    r
}

pub const DEVICE: &str = "
device_type: qemu
constants:
  failure_retry: 1
  boot_retry: 0
actions:
  deploy:
    methods:
      image: null
  boot:
    methods:
      qemu: {parameters: {}}
timeouts:
  actions:
    boot-image-retry: {minutes: 2}
    power-off: {seconds: 10}
";

pub fn device() -> Device {
    Device::from_yaml(DEVICE, None).unwrap()
}
