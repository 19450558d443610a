//! Every mistake in a job is reported in one run, each with file, key path and expectation.

mod common;

use lava_pipeline::definition::check_job;

const FIVE_MISTAKES: &str = "
job_name: five mistakes
device_type: qemu
visibility: public
priorty: high
timeouts:
  action: {minuts: 5}
actions:
- deploy:
    to: tmpfss
    images: {kernel: {url: 'file:///k'}}
- boot:
    method: minimal
    prompts: ['# ']
- tests:
    definitions: []
- test:
    failure_retry: 0
    definitions:
    - {from: gitt, repository: 'x', path: a.yaml, name: smoke}
";

#[test]
fn five_independent_mistakes_are_all_reported() {
    let registry = common::registry();
    let device = common::device();
    let diagnostics = check_job(FIVE_MISTAKES, "jobs/five.yaml", Some(&device), &registry);
    let shown: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    let expect = [
        "jobs/five.yaml: priorty: unknown key 'priorty' (did you mean 'priority'?)",
        "jobs/five.yaml: timeouts.action.minuts: unknown key 'minuts' (did you mean 'minutes'?)",
        "jobs/five.yaml: timeouts.job: missing required key",
        "jobs/five.yaml: actions[0].deploy.to: unknown deployment 'tmpfss' (did you mean 'tmpfs'?)",
        "jobs/five.yaml: actions[1].boot.method: the device does not accept boot method 'minimal'",
        "jobs/five.yaml: actions[2].tests: unknown key 'tests' (did you mean 'test'?)",
        "jobs/five.yaml: actions[3].test.failure_retry: expected a whole number >= 1, found ! \"0\"",
        "jobs/five.yaml: actions[3].test.definitions[0].from: unknown source 'gitt' (did you mean 'git'?)",
    ];
    for e in expect {
        assert!(
            shown.iter().any(|s| s.starts_with(e)),
            "missing {e:?} in\n{}",
            shown.join("\n")
        );
    }
    assert_eq!(
        shown.len(),
        expect.len(),
        "unexpected extra diagnostics:\n{}",
        shown.join("\n")
    );
}

#[test]
fn a_correct_job_has_no_diagnostics() {
    let job = "
job_name: fine
device_type: qemu
visibility: public
priority: medium
timeouts: {job: {minutes: 10}, action: {minutes: 1}, actions: {power-off: {seconds: 5}}}
context: {arch: amd64}
actions:
- deploy: {to: tmpfs, images: {kernel: {url: 'file:///k'}}}
- boot: {method: qemu, prompts: ['# ']}
- test: {definitions: [{from: inline, repository: {metadata: {name: x}}, path: x.yaml, name: x}]}
";
    let diagnostics = check_job(
        job,
        "fine.yaml",
        Some(&common::device()),
        &common::registry(),
    );
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
}

#[test]
fn not_a_mapping_and_bad_yaml_are_single_clear_errors() {
    let registry = common::registry();
    let d = check_job("- a\n- b\n", "list.yaml", None, &registry);
    assert_eq!(d.len(), 1);
    assert!(
        d[0].to_string()
            .contains("expected a mapping of job keys, found a list")
    );
    let d = check_job("job_name: [unclosed", "bad.yaml", None, &registry);
    assert_eq!(d.len(), 1);
    assert!(d[0].to_string().starts_with("bad.yaml: not valid YAML"));
}
