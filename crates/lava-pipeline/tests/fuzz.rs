//! Parsing and validation never panic, whatever the job text (property test).

mod common;

use lava_pipeline::definition::check_job;
use lava_pipeline::{JobParser, ParseOptions};
use proptest::prelude::*;

const SEED: &str = "job_name: seed
device_type: qemu
visibility: public
timeouts: {job: {minutes: 10}, action: {minutes: 1}}
actions:
- deploy: {to: tmpfs, timeout: {minutes: 2}, images: {kernel: {url: 'file:///k'}}}
- boot: {method: qemu, failure_retry: 2, prompts: ['# ']}
- test: {timeout: {minutes: 5}, definitions: [{from: git, repository: r, path: p, name: n}]}
- command: {name: hard_reset}
";

fn check_never_panics(text: &str) {
    let registry = common::registry();
    let _ = check_job(text, "fuzz.yaml", Some(&common::device()), &registry);
    let mut parsed = JobParser::new(&registry, &common::Fixed).parse(
        text,
        common::device(),
        &ParseOptions::default(),
    );
    if let Ok((job, pipeline)) = parsed.as_mut() {
        let _ = pipeline.validate(job);
        let _ = pipeline.describe();
    }
}

/// YAML-ish fragments that make mutations land on interesting shapes.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{}".to_string()),
        Just("[]".to_string()),
        Just("null".to_string()),
        Just("-1".to_string()),
        Just("{minutes: x}".to_string()),
        Just("{to: tmpfs}".to_string()),
        Just("- boot: 3".to_string()),
        Just("\n- ".to_string()),
        Just(": :".to_string()),
        "[a-z_]{1,8}".prop_map(|s| s),
        any::<u32>().prop_map(|n| n.to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn mutated_jobs_never_panic(cut in 0..SEED.len(), len in 0usize..40, insert in fragment()) {
        let mut text = SEED.to_string();
        let start = cut.min(text.len());
        let end = (start + len).min(text.len());
        if text.is_char_boundary(start) && text.is_char_boundary(end) {
            text.replace_range(start..end, &insert);
        }
        check_never_panics(&text);
    }

    #[test]
    fn random_text_never_panics(text in "\\PC{0,200}") {
        check_never_panics(&text);
    }

    #[test]
    fn line_shuffles_never_panic(seed in any::<u64>()) {
        let mut lines: Vec<&str> = SEED.lines().collect();
        let n = lines.len();
        let (i, j) = ((seed % n as u64) as usize, ((seed >> 8) % n as u64) as usize);
        lines.swap(i, j);
        lines.truncate(((seed >> 16) % n as u64) as usize + 1);
        check_never_panics(&lines.join("\n"));
    }
}
