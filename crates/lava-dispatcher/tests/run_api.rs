//! The run API on the local-shell device: inputs given as text and parsed values,
//! validate-only, cancellation and job mistakes, each checked through the `Outcome` and
//! the files the run wrote.

use lava_dispatcher::{
    CancellationToken, DeviceInput, ErrorKind, JobInput, JobRun, JobStatus, Mapping, TestResult,
};
use lava_test_support::paths::fixture;

fn device_text() -> String {
    std::fs::read_to_string(fixture("local-shell/device.yaml")).unwrap()
}

fn inline_job() -> Mapping {
    let text = std::fs::read_to_string(fixture("local-shell/inline-job.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_only_describes_and_validates_without_running() {
    let output = tempfile::tempdir().unwrap();
    let describe = output.path().join("copy.yaml");
    let outcome = JobRun::new(
        DeviceInput::Yaml(device_text()),
        JobInput::Parsed {
            name: "inline".into(),
            definition: inline_job(),
        },
    )
    .output_dir(output.path().join("out"))
    .job_id("7")
    .validate_only(true)
    .describe_to(&describe)
    .run()
    .await
    .unwrap();
    assert_eq!(outcome.status, JobStatus::Pass);
    assert_eq!(outcome.job_id, "7");
    let validate = outcome.find("lava", "validate").unwrap();
    assert_eq!(validate.result, TestResult::Pass);
    assert_eq!(outcome.test_cases().count(), 0, "nothing ran");
    assert!(outcome.find("lava", "minimal-boot").is_none());
    let description = outcome.files.description.clone().unwrap();
    assert_eq!(description, output.path().join("out/description.yaml"));
    assert_eq!(
        std::fs::read_to_string(&description).unwrap(),
        std::fs::read_to_string(&describe).unwrap()
    );
    let result: Mapping =
        serde_yaml::from_str(&std::fs::read_to_string(&outcome.files.result).unwrap()).unwrap();
    assert_eq!(result, outcome.record);
    assert_eq!(result["result"].as_str(), Some("pass"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mistake_of_a_job_given_as_text_is_named_with_its_key_path() {
    let output = tempfile::tempdir().unwrap();
    let text = "job_name: bad\nvisibility: public\npriorty: high\ntimeouts: {job: {minutes: 1}}\nactions:\n- deploy: {to: overlayy}\n".to_string();
    let outcome = JobRun::new(
        fixture("local-shell/device.yaml"),
        JobInput::Yaml {
            name: "bad.yaml".into(),
            text,
        },
    )
    .output_dir(output.path())
    .run()
    .await
    .unwrap();
    assert_eq!(outcome.status, JobStatus::Fail);
    let error = outcome.error.clone().unwrap();
    assert_eq!(error.kind, ErrorKind::Job);
    assert_eq!(error.error_type(), "Job");
    assert!(error.message.contains("bad.yaml"), "{error}");
    assert!(error.message.contains("priorty: unknown key"), "{error}");
    assert!(error.message.contains("deploy.to"), "{error}");
    assert_eq!(outcome.files.description, None);
    assert_eq!(outcome.record["error_type"].as_str(), Some("Job"));
    assert_eq!(
        outcome.find("lava", "job").unwrap().result,
        TestResult::Fail
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_token_cancels_the_job_and_finalize_still_runs() {
    let output = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let outcome = JobRun::new(fixture("local-shell/device.yaml"), inline_job_path())
        .output_dir(output.path())
        .cancel_token(cancel)
        .run()
        .await
        .unwrap();
    let log = std::fs::read_to_string(&outcome.files.logs).unwrap();
    assert_eq!(outcome.status, JobStatus::Fail, "{log}");
    assert_eq!(outcome.error.unwrap().kind, ErrorKind::Canceled, "{log}");
    assert!(log.contains("\"msg\": \"start: 4 finalize"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_device_is_a_configuration_error() {
    let output = tempfile::tempdir().unwrap();
    let outcome = JobRun::new(
        std::path::Path::new("/nonexistent/device.yaml"),
        inline_job_path(),
    )
    .output_dir(output.path())
    .run()
    .await
    .unwrap();
    let error = outcome.error.unwrap();
    assert_eq!(error.kind, ErrorKind::Configuration);
    assert!(
        error.message.contains("/nonexistent/device.yaml"),
        "{error}"
    );
}

#[tokio::test]
async fn an_output_directory_that_cannot_be_created_is_a_run_error() {
    let error = JobRun::new(fixture("local-shell/device.yaml"), inline_job_path())
        .output_dir("/proc/lava-rs-cannot-be-here")
        .run()
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("/proc/lava-rs-cannot-be-here"),
        "{error}"
    );
}

fn inline_job_path() -> std::path::PathBuf {
    fixture("local-shell/inline-job.yaml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_upload_delivers_the_whole_log_and_the_outcome_says_so() {
    use lava_log_upload::test_server::{FakeServer, Fault};
    let token = "run-api-token-0123456789abcdefgh";
    let job_id = lava_test_support::unique_job_id();
    let server = FakeServer::start(token, &job_id).await.unwrap();
    server.push_faults([Fault::Status(502), Fault::Partial(2)]);
    let output = tempfile::tempdir().unwrap();
    let outcome = JobRun::new(fixture("local-shell/device.yaml"), inline_job_path())
        .output_dir(output.path().join("out"))
        .job_id(&job_id)
        .log_upload(lava_dispatcher::LogUpload {
            url: server.url(),
            token: token.into(),
            interval: std::time::Duration::from_millis(200),
        })
        .run()
        .await
        .unwrap();
    let report = outcome.log_upload.clone().expect("an upload report");
    let log = std::fs::read_to_string(&outcome.files.logs).unwrap();
    let records: Vec<String> = log
        .lines()
        .map(|l| l.strip_prefix("- ").unwrap().to_string())
        .collect();
    assert_eq!(report.pending, 0, "{report:?}");
    assert_eq!(report.accepted, records.len() as u64);
    assert_eq!(server.stored(), records);
    assert!(!log.contains(token));
}
