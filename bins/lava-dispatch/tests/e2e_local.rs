//! End-to-end: `lava-run` as a test writer runs it on their machine (the local-shell
//! device): default job id and output directory, usage errors, `--results` files,
//! `--fail-on-test-failure` and the stderr log formats.

mod common;

use common::lava_run;
use lava_test_support::paths::workspace;

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Run `lava-run` in `cwd` with `args` (no terminal: stderr is captured).
fn lava_run_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(lava_run())
        .current_dir(cwd)
        .args(args)
        .envs(env.iter().copied())
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn fixture(name: &str) -> String {
    workspace()
        .join("fixtures/local-shell")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn usage_errors_exit_2_naming_every_missing_argument() {
    let dir = tempfile::tempdir().unwrap();
    let none = lava_run_in(dir.path(), &[], &[]);
    assert_eq!(none.status.code(), Some(2));
    let text = String::from_utf8_lossy(&none.stderr);
    assert!(
        text.contains("--device <DEVICE>") && text.contains("<DEFINITION>"),
        "{text}"
    );
    let some = lava_run_in(dir.path(), &["--device", "device.yaml"], &[]);
    assert_eq!(some.status.code(), Some(2));
    let text = String::from_utf8_lossy(&some.stderr);
    assert!(
        text.contains("<DEFINITION>") && !text.contains("--device <DEVICE>\n"),
        "{text}"
    );
    let bad = lava_run_in(
        dir.path(),
        &["--device", "d.yaml", "--results", "r.txt", "job.yaml"],
        &[],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("r.txt: the results file must end in .xml")
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "a usage error writes nothing"
    );
}

#[test]
fn local_runs_default_their_job_id_and_output_dir_and_write_results() {
    let dir = tempfile::tempdir().unwrap();
    let (device, job) = (fixture("device.yaml"), fixture("inline-job.yaml"));
    // A job with a failed test case completes: 0 by default.
    let first = lava_run_in(
        dir.path(),
        &["--device", &device, "--results", "out/results.xml", &job],
        &[],
    );
    assert_eq!(first.status.code(), Some(0));
    let output = dir.path().join("lava-output/1");
    for file in ["logs.yaml", "description.yaml", "result.yaml"] {
        assert!(
            output.join(file).is_file(),
            "{file} in {}",
            output.display()
        );
    }
    let log = std::fs::read_to_string(output.join("logs.yaml")).unwrap();
    assert!(log.contains("/tmp/lava-rs-local/lava-1"), "the job id is 1");
    let xml = std::fs::read_to_string(dir.path().join("out/results.xml")).unwrap();
    assert!(xml.contains("<testsuites name=\"lava job 1\""), "{xml}");
    assert!(
        xml.contains(
            "<testsuite name=\"0_smoke\" tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"0\""
        ),
        "{xml}"
    );
    // Not a terminal: YAML lines on stderr and no table.
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        stderr.lines().all(|l| l.starts_with("{\"dt\": ")),
        "{stderr}"
    );

    // --fail-on-test-failure: the failed case fails the run, with 3; the run is number 2.
    let second = lava_run_in(
        dir.path(),
        &[
            "--device",
            &device,
            "--fail-on-test-failure",
            "--results",
            "results.json",
            "--log-format",
            "human",
            &job,
        ],
        &[],
    );
    assert_eq!(second.status.code(), Some(3));
    assert!(dir.path().join("lava-output/2/logs.yaml").is_file());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap())
            .unwrap();
    assert_eq!(json["job_id"], "2");
    assert_eq!(json["result"], "pass");
    assert_eq!(json["summary"]["fail"], 1);
    // --log-format human off a terminal: the human layout, no colours.
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(" info      Job finished correctly\n") && !stderr.contains('\x1b'),
        "{stderr}"
    );
}

#[test]
fn fail_on_test_failure_passes_when_every_case_passes() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("passing.yaml");
    let text = std::fs::read_to_string(fixture("inline-job.yaml"))
        .unwrap()
        .replace("          - lava-test-case always-fail --shell false\n", "");
    assert!(!text.contains("always-fail"));
    std::fs::write(&job, text).unwrap();
    let run = lava_run_in(
        dir.path(),
        &[
            "--job-id",
            "local",
            "--device",
            &fixture("device.yaml"),
            "--fail-on-test-failure",
            job.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(dir.path().join("lava-output/local/result.yaml").is_file());
}

/// Serve `body` once over HTTP on 127.0.0.1 (a thread with its own listener); returns the
/// base URL.
fn serve_once(body: Vec<u8>) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        let header = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(header.as_bytes());
        let _ = stream.write_all(&body);
    });
    base
}

#[test]
fn url_definitions_are_fetched_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree/defs");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(
        tree.join("web.yaml"),
        "metadata: {format: Lava-Test Test Definition 1.0, name: web, description: web}\nrun: {steps: ['lava-test-case fetched --result pass']}\n",
    )
    .unwrap();
    let archive = dir.path().join("web.tar.gz");
    let tar = Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(dir.path().join("tree"))
        .arg("defs")
        .status()
        .unwrap();
    assert!(tar.success());
    let base = serve_once(std::fs::read(&archive).unwrap());
    let job = dir.path().join("url-job.yaml");
    let text = std::fs::read_to_string(fixture("inline-job.yaml")).unwrap();
    let definitions = text.find("    definitions:\n").unwrap();
    std::fs::write(
        &job,
        format!(
            "{}    definitions:\n    - from: url\n      repository: {base}/archives/web.tar.gz\n      path: defs/web.yaml\n      name: web\n",
            &text[..definitions]
        ),
    )
    .unwrap();
    let run = lava_run_in(
        dir.path(),
        &[
            "--job-id",
            "9105",
            "--device",
            &fixture("device.yaml"),
            "--results",
            "results.json",
            job.to_str().unwrap(),
        ],
        &[],
    );
    let log = std::fs::read_to_string(dir.path().join("lava-output/9105/logs.yaml")).unwrap();
    assert_eq!(run.status.code(), Some(0), "{log}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap())
            .unwrap();
    let web = json["suites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "0_web")
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(web["cases"][0]["name"], "fetched");
    assert_eq!(web["cases"][0]["result"], "pass");
}

/// Run `lava-run` with a terminal as stdout and stderr (util-linux `script`), in `cwd`;
/// returns the exit status and what the terminal showed.
fn lava_run_on_a_terminal(cwd: &Path, args: &[&str], no_color: bool) -> (Option<i32>, String) {
    let quoted: Vec<String> = std::iter::once(lava_run().display().to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    let mut command = Command::new("script");
    command
        .current_dir(cwd)
        .args(["-qec", &quoted.join(" "), "/dev/null"])
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    if no_color {
        command.env("NO_COLOR", "1");
    }
    let output = command.output().expect("script (util-linux) runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).replace('\r', ""),
    )
}

#[test]
fn on_a_terminal_the_job_ends_with_the_result_table() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--device",
        &fixture("device.yaml"),
        &fixture("inline-job.yaml"),
    ];
    let (code, screen) = lava_run_on_a_terminal(dir.path(), &args, false);
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains("\x1b["), "coloured: {screen}");
    assert!(
        screen.contains("3 test cases: 2 pass, 1 fail; job pass\n"),
        "{screen}"
    );
    let output = dir.path().join("lava-output/1").canonicalize().unwrap();
    assert!(
        screen.ends_with(&format!("output: {}\n", output.display())),
        "{screen}"
    );

    // NO_COLOR: the same human layout and table, without escape sequences.
    let (code, screen) = lava_run_on_a_terminal(dir.path(), &args, true);
    assert_eq!(code, Some(0), "{screen}");
    assert!(!screen.contains('\x1b'), "{screen:?}");
    assert!(
        screen.contains(" info      Job finished correctly\n"),
        "{screen}"
    );
    let table = &screen[screen.find("\nsuite ").expect("the table") + 1..];
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].starts_with("suite    case "), "{table}");
    assert!(
        rows.iter()
            .any(|r| r.starts_with("0_smoke  speed ") && r.ends_with("pass     12.5 MB/s")),
        "{table}"
    );
    assert!(dir.path().join("lava-output/2/logs.yaml").is_file());
}
