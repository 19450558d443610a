//! `lava-dispatch render-device`: print the rendered device configuration of a dictionary.

use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct RenderDeviceArgs {
    /// A device-type template directory (repeatable; searched first to last, then the defaults).
    #[arg(long = "path")]
    pub paths: Vec<PathBuf>,
    /// A YAML mapping passed to the templates as their context.
    #[arg(long)]
    pub context: Option<PathBuf>,
    /// The device dictionary (*.jinja2).
    pub dictionary: PathBuf,
}

pub fn run(_args: &RenderDeviceArgs) -> anyhow::Result<i32> {
    anyhow::bail!("render-device is not implemented yet")
}
