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
        "jobs/five.yaml: actions[3].test.failure_retry: expected a whole number >= 1, found 0",
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

fn shown(job: &str) -> Vec<String> {
    check_job(job, "job.yaml", None, &common::registry())
        .iter()
        .map(ToString::to_string)
        .collect()
}

const HEAD: &str = "job_name: x\nvisibility: public\n";

#[test]
fn huge_timeouts_are_refused_with_their_key_path() {
    let job = format!(
        "{HEAD}timeouts:\n  job: {{days: 1000000000000000}}\n  action: {{days: 300, hours: 2000}}\n  connections: {{lava-test-shell: {{seconds: 99999999999}}}}\nactions:\n- boot: {{method: qemu, timeout: {{days: 366}}, failure_retry_interval: 40000000}}\n"
    );
    let d = shown(&job);
    let expect = [
        "job.yaml: timeouts.job.days: a timeout of 86400000000000000000 seconds exceeds the longest allowed, 31536000 seconds (365 days)",
        "job.yaml: timeouts.action: a timeout of 33120000 seconds exceeds",
        "job.yaml: timeouts.connections.lava-test-shell.seconds: a timeout of 99999999999 seconds exceeds",
        "job.yaml: actions[0].boot.timeout.days: a timeout of 31622400 seconds exceeds",
        "job.yaml: actions[0].boot.failure_retry_interval: 40000000 seconds exceeds",
    ];
    for e in expect {
        assert!(
            d.iter().any(|s| s.starts_with(e)),
            "missing {e:?} in\n{}",
            d.join("\n")
        );
    }
    let fine = format!(
        "{HEAD}timeouts: {{job: {{days: 365}}}}\nactions:\n- boot: {{method: qemu, timeout: {{days: 364, hours: 24}}}}\n"
    );
    assert!(
        shown(&fine).iter().all(|s| !s.contains("exceeds")),
        "{:?}",
        shown(&fine)
    );
}

#[test]
fn numbers_in_messages_read_as_numbers_not_yaml_tags() {
    let job = format!(
        "{HEAD}timeouts: {{job: {{minutes: -5}}}}\nactions:\n- boot: {{method: qemu, failure_retry: -5}}\n"
    );
    let d = shown(&job);
    assert!(
        d.iter()
            .any(|s| s == "job.yaml: timeouts.job.minutes: expected a whole number, found -5"),
        "{d:?}"
    );
    assert!(
        d.iter()
            .any(|s| s.ends_with("failure_retry: expected a whole number >= 1, found -5")),
        "{d:?}"
    );
    assert!(d.iter().all(|s| !s.contains('!')), "{d:?}");
}

#[test]
fn deeply_nested_jobs_are_refused_before_parsing() {
    let job = format!(
        "{HEAD}timeouts: {{job: {{minutes: 1}}}}\nactions: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let d = shown(&job);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].starts_with("job.yaml: the YAML document nests more than 64 levels deep (line 4)"),
        "{d:?}"
    );
}

#[test]
fn test_definition_entries_that_would_fail_the_run_are_refused() {
    let long = "n".repeat(199);
    let job = format!(
        "{HEAD}timeouts: {{job: {{minutes: 1}}}}\nactions:\n- test:\n    definitions:\n    - {{from: git, repository: 'https://x/y.git', path: ../../etc/passwd, name: a, revision: '--upload-pack=touch /tmp/x'}}\n    - {{from: git, repository: '--upload-pack=x', path: /abs.yaml, name: b, branch: -x}}\n    - {{from: inline, repository: {{}}, path: ok.yaml, name: c, parameters: {{'A;reboot': 1, GOOD_1: 2, 9x: 3}}}}\n    - {{from: inline, repository: {{}}, path: ok.yaml, name: {long}}}\n    - {{from: inline, repository: {{}}, path: ./, name: e}}\n"
    );
    let d = shown(&job);
    let at = "job.yaml: actions[0].test.definitions";
    let expect = [
        format!(
            "{at}[0].path: invalid test definition path '../../etc/passwd': '..' is not allowed"
        ),
        format!(
            "{at}[0].revision: invalid git revision '--upload-pack=touch /tmp/x': it starts with '-'"
        ),
        format!(
            "{at}[1].path: invalid test definition path '/abs.yaml': absolute paths are not allowed"
        ),
        format!("{at}[1].repository: invalid git repository '--upload-pack=x'"),
        format!("{at}[1].branch: invalid git branch '-x'"),
        format!("{at}[2].parameters.A;reboot: invalid parameter name 'A;reboot'"),
        format!("{at}[2].parameters.9x: invalid parameter name '9x'"),
        format!("{at}[3].name: test definition name of 199 characters is too long"),
        format!("{at}[4].path: invalid test definition path './': the path names no file"),
    ];
    for e in &expect {
        assert!(
            d.iter().any(|s| s.starts_with(e.as_str())),
            "missing {e:?} in\n{}",
            d.join("\n")
        );
    }
    assert_eq!(d.len(), expect.len(), "{}", d.join("\n"));
}
