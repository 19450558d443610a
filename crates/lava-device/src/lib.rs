//! Device dictionaries and device-type templates into device configurations, as LAVA does.
//!
//! A lab keeps one Jinja2 *device dictionary* per board; it `{% extends %}` a *device-type
//! template*. This crate renders the dictionary the way lava-server's Jinja2 environment does
//! (sandboxed, no autoescape, `trim_blocks`, Python's printing of values, LAVA's extra filters
//! `shlex_quote`, `yaml_quote` and `qemu_guest_fs_interface`) so the output is the same
//! device configuration YAML, then loads that YAML into a [`DeviceConfig`].
//!
//! Main types: [`Renderer`] (a template search path, first match wins, plus the environment),
//! [`DeviceConfig`] (typed keys the dispatcher uses, plus the raw mapping), [`DeviceError`].
//! The `DeviceConfig` built here is the dispatcher's one device model: lava-pipeline's
//! `Device` holds it and actions read it at run time. It loads any mapping LAVA loads;
//! sections are required where they are read (`get_constant` gives LAVA's message).
//!
//! ```no_run
//! use lava_device::{DeviceConfig, Renderer, load_device};
//! use std::path::Path;
//!
//! // Search ./device-types, then lava-server's default directories.
//! let renderer = Renderer::with_defaults(["device-types"]);
//! let context = serde_yaml::Mapping::new(); // the job's `context:`
//! let yaml = renderer.render_file(Path::new("devices/qemu01.jinja2"), &context)?;
//! let device = DeviceConfig::from_yaml_str(&yaml, "devices/qemu01.jinja2")?;
//! println!("{:?} has {} boot methods", device.hostname, device.actions.boot.methods.len());
//!
//! // Or in one step, accepting either a dictionary or rendered YAML:
//! let device = load_device(Path::new("qemu01.yaml"), &renderer, &context)?;
//! # Ok::<(), lava_device::DeviceError>(())
//! ```

#![warn(missing_docs)]

mod config;
mod error;
pub mod filters;
pub mod python;
mod render;
mod scope;
mod value;
mod yaml;

pub use config::{
    ActionSection, Actions, CharacterDelays, CommandList, Commands, ConnectionCommand,
    DeviceConfig, DeviceTimeouts, Timeout, UserCommand, is_dictionary, load_device, render_device,
};
pub use error::DeviceError;
pub use render::{DEFAULT_DEVICE_TYPE_DIRS, Renderer, load_context};
pub use value::from_yaml;
pub use yaml::parse as parse_yaml;

/// A render context: the YAML mapping of variables the templates see (a job's `context:`).
pub type Context = serde_yaml::Mapping;
