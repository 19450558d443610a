//! Building pipelines: levels, LAVA's timeout precedence, retries, description.

mod common;

use lava_pipeline::{JobParser, ParseOptions, description_yaml};

fn build(job: &str) -> Vec<(String, String, u64, u32)> {
    let registry = common::registry();
    let (_job, pipeline) = JobParser::new(&registry, &common::Fixed)
        .parse(job, common::device(), &ParseOptions::default())
        .unwrap();
    pipeline
        .walk()
        .iter()
        .map(|n| {
            (
                n.meta.level.clone(),
                n.meta.name.clone(),
                n.meta.timeout,
                n.meta.max_retries,
            )
        })
        .collect()
}

#[test]
fn timeouts_follow_lavas_precedence() {
    let job = "
timeouts: {job: {minutes: 10}, action: {minutes: 1}, actions: {download-retry: {seconds: 45}}}
actions:
- deploy:
    to: tmpfs
    timeout: {minutes: 2}
    timeouts: {deployimages: {seconds: 100}}
    images: {}
- boot: {method: qemu, failure_retry: 2}
- test: {timeout: {minutes: 10}, failure_retry: 3, definitions: []}
";
    let got = build(job);
    let want: Vec<(&str, &str, u64, u32)> = vec![
        ("1", "deployimages", 100, 1),     // block `timeouts.<name>` wins
        ("1.1", "download-retry", 45, 1),  // job `timeouts.actions.<name>` over block timeout
        ("2", "boot-image-retry", 120, 2), // device named over job action default
        ("2.1", "boot-qemu-image", 60, 1), // parent 120 // 2 retries
        ("2.2", "auto-login-action", 60, 1),
        ("3", "lava-test-retry", 600, 3),   // block timeout
        ("3.1", "lava-test-shell", 200, 1), // 600 // 3
        ("4", "finalize", 60, 1),
        ("4.1", "power-off", 10, 1), // device named
        ("4.2", "read-feedback", 60, 1),
    ];
    let got: Vec<(&str, &str, u64, u32)> = got
        .iter()
        .map(|(l, n, t, r)| (l.as_str(), n.as_str(), *t, *r))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn repeat_and_failure_retry_conflict_is_a_job_error() {
    let registry = common::registry();
    let err = JobParser::new(&registry, &common::Fixed)
        .parse(
            "timeouts: {job: {minutes: 1}}\nactions:\n- boot: {method: qemu, failure_retry: 2, repeat: 2}\n",
            common::device(),
            &ParseOptions::default(),
        )
        .unwrap_err();
    assert_eq!(err.kind, lava_pipeline::ErrorKind::Job);
    assert_eq!(
        err.message,
        "Unable to use repeat and failure_retry, use a repeat block"
    );
}

#[test]
fn description_has_lavas_shape() {
    let registry = common::registry();
    let (_job, pipeline) = JobParser::new(&registry, &common::Fixed)
        .parse(
            "timeouts: {job: {minutes: 1}}\nactions:\n- boot: {method: qemu}\n",
            common::device(),
            &ParseOptions::default(),
        )
        .unwrap();
    let text = description_yaml(&pipeline);
    let expected = "pipeline:
- class: RetryBlock
  name: boot-image-retry
  level: '1'
  max_retries: 1
  description: a retry block
  summary: a retry block
  timeout: 120
  pipeline:
  - class: Leaf
    name: boot-qemu-image
    level: '1.1'
    max_retries: 1
    description: a leaf
    summary: a leaf
    timeout: 30
";
    assert!(text.starts_with(expected), "{text}");
}

#[test]
fn no_strategy_gives_lavas_message() {
    let registry = common::registry();
    let err = JobParser::new(&registry, &common::Fixed)
        .parse(
            "timeouts: {job: {minutes: 1}}\nactions:\n- boot: {method: minimal}\n",
            common::device(),
            &ParseOptions::default(),
        )
        .unwrap_err();
    assert!(err.message.starts_with(
        "None of the Base-boot strategies accepted your deployment parameters, reasons given:\n"
    ));
    assert!(
        err.message
            .contains("minimal: 'minimal' not in the device configuration methods")
    );
}
