//! `lava-dispatch render-device`: print the rendered device configuration of a dictionary.

use clap::Args;
use lava_device::{Context, Renderer, load_context};
use std::io::Write;
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

/// Render the dictionary and write the result to stdout byte for byte (Jinja2 drops the
/// template's final newline, and so do we: nothing is added).
pub fn run(args: &RenderDeviceArgs) -> anyhow::Result<i32> {
    let context = match &args.context {
        Some(path) => load_context(path)?,
        None => Context::new(),
    };
    let renderer = Renderer::with_defaults(args.paths.iter().cloned());
    let text = renderer.render_file(&args.dictionary, &context)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(0)
}
