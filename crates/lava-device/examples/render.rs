//! `render [--path DIR]... [--context FILE] DICTIONARY`: the same as
//! `lava-dispatch render-device`, usable on its own (handy for checking this crate alone).

use lava_device::{Context, Renderer, load_context};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut paths = Vec::new();
    let mut context = None;
    let mut dictionary = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--path") => paths.extend(args.next().map(PathBuf::from)),
            Some("--context") => context = args.next().map(PathBuf::from),
            _ => dictionary = Some(PathBuf::from(arg)),
        }
    }
    let Some(dictionary) = dictionary else {
        eprintln!("usage: render [--path DIR]... [--context FILE] DICTIONARY");
        return ExitCode::from(2);
    };
    let result = context
        .map(|c| load_context(&c))
        .unwrap_or_else(|| Ok(Context::new()))
        .and_then(|ctx| Renderer::with_defaults(paths).render_file(&dictionary, &ctx));
    match result {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
