//! `render-bench CASES_DIR TEMPLATES_DIR REPEAT`: render every template case (its
//! `dictionary.jinja2` with its `context.yaml`, if any) REPEAT times with one renderer, as
//! `cargo xtask bench render` does for the Rust side. Prints `seconds: S` (rendering only,
//! not loading the case files), `cases: N` and how many renders matched `expected.yaml`.

use lava_device::{Context, Renderer, load_context};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [cases_dir, templates, repeat] = args.as_slice() else {
        return Err("usage: render-bench CASES_DIR TEMPLATES_DIR REPEAT".into());
    };
    let repeat: usize = repeat.parse()?;
    let mut cases: Vec<(String, String, Context, Option<String>)> = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cases_dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    dirs.sort();
    for dir in dirs {
        let dictionary = dir.join("dictionary.jinja2");
        if !dictionary.is_file() {
            continue;
        }
        let source = std::fs::read_to_string(&dictionary)?;
        let context_file = dir.join("context.yaml");
        let context = if context_file.is_file() {
            load_context(&context_file)?
        } else {
            Context::new()
        };
        let expected = std::fs::read_to_string(dir.join("expected.yaml")).ok();
        cases.push((dictionary.display().to_string(), source, context, expected));
    }
    let renderer = Renderer::new([templates]);
    let mut identical = 0;
    let start = Instant::now();
    for round in 0..repeat {
        for (name, source, context, expected) in &cases {
            let text = renderer.render_str(name, source, context)?;
            if round == 0 && expected.as_deref() == Some(text.as_str()) {
                identical += 1;
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    println!("seconds: {seconds:.6}");
    println!("cases: {}", cases.len());
    println!("identical: {identical}");
    Ok(())
}
