//! The helper scripts executed for real under dash (`/bin/sh` on Debian) and
//! busybox ash, checking the exact markers they print, then the whole runner end
//! to end with its output fed back through the signal parser and results builder.
//!
//! Needs the `dash` and `busybox-static` (or `busybox`) packages.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use lava_shell::results::ShellOutput;
use lava_shell::signals::Signal;
use lava_shell::*;

/// The shells under test: (label, interpreter line for the helpers' shebang).
fn shells() -> Vec<(&'static str, String)> {
    let dash = ["/usr/bin/dash", "/bin/dash"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("dash is required (apt-get install dash)");
    let busybox = ["/usr/bin/busybox", "/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox is required (apt-get install busybox-static)");
    vec![
        ("dash", dash.to_string()),
        ("busybox", format!("{busybox} sh")),
    ]
}

struct Installed {
    _dir: tempfile::TempDir,
    tree: PathBuf,
    overlay: Overlay,
    shell: String,
}

impl Installed {
    fn bin(&self) -> PathBuf {
        self.tree.join("bin")
    }

    fn run(&self, helper: &str, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
        let path = format!("{}:/usr/bin:/bin:/usr/sbin:/sbin", self.bin().display());
        let mut child = Command::new(self.bin().join(helper))
            .args(args)
            .env_clear()
            .env("PATH", path)
            .envs(env.iter().copied())
            .current_dir(&self.tree)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{helper}: {e}"));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

const RUNNER_DEFS: &str = r#"
- from: inline
  name: smoke
  path: inline/smoke.yaml
  parameters: {WHO: "job's value"}
  repository:
    metadata: {format: Lava-Test Test Definition 1.0, name: smoke}
    params: {WHO: default}
    run:
      steps:
        - lava-test-case hello --shell echo "hello $WHO"
        - lava-test-case args --shell "set -- a b; test $2 = b"
        - lava-test-set start numbers
        - lava-test-case speed --result pass --measurement 12.5 --units MB/s
        - lava-test-set stop
        - lava-test-case broken --shell false
        - "echo 'parsed-one: PASS'"
        - lava-test-reference ref --result pass --reference http://example.org/r
- from: inline
  name: needs-install
  path: i.yaml
  repository:
    metadata: {name: needs-install}
    install: {steps: ["false"]}
    run: {steps: [lava-test-case never --result pass]}
- from: inline
  name: after
  path: a.yaml
  expected: [later, missing-one]
  repository:
    metadata: {name: after}
    parse:
      pattern: '^(?P<test_case_id>[a-z-]+): (?P<result>PASS|FAIL)'
      fixupdict: {PASS: pass, FAIL: fail}
    run:
      steps:
        - lava-test-case later --result pass
        - lava-test-case surprise --result pass
"#;

fn install(shell: &str, multinode: bool) -> Installed {
    let dir = tempfile::tempdir().unwrap();
    let definitions: Vec<serde_yaml::Value> = serde_yaml::from_str(RUNNER_DEFS).unwrap();
    let planned = definitions
        .iter()
        .enumerate()
        .map(|(i, d)| PlannedDefinition {
            source: DefinitionSource::from_value(d).unwrap(),
            repo_action_level: format!("1.4.{}", i + 1),
        })
        .collect();
    let request = OverlayRequest {
        job_id: "7002".into(),
        namespace: "common".into(),
        constants: ShellConstants {
            lava_test_results_dir: format!("{}/lava-%s", dir.path().display()),
            lava_test_sh_cmd: shell.to_string(),
            distro: None,
        },
        test_blocks: vec![TestBlock {
            definitions: planned,
            needs_character_delay: false,
        }],
        baked: BakedValues {
            target_ip: "10.0.0.9".into(),
            target_mac: "52:54:00:12:34:56".into(),
            storage: vec![
                ("UMS".into(), "/dev/disk/by-id/usb-1".into()),
                ("SATA".into(), "/dev/disk/by-id/ata-2".into()),
            ],
            ..Default::default()
        },
        multinode: multinode.then(|| MultinodeValues {
            role: "client".into(),
            roles: vec![
                ("7001".into(), "server".into()),
                ("7002".into(), "client".into()),
                ("7003".into(), "client".into()),
            ],
        }),
        ..Default::default()
    };
    // The results dir is an absolute path inside our temp dir, so the tree is
    // built where the device would see it.
    let overlay = OverlayBuilder::default()
        .build(&request, Path::new("/"))
        .unwrap();
    let tree = overlay.tree.clone();
    // Point the MultiNode cache into the temp dir so parallel tests do not share it.
    let cache = dir.path().join("cache/mn.txt");
    let network_cache = dir.path().join("cache/network.txt");
    for entry in fs::read_dir(tree.join("bin")).unwrap() {
        let path = entry.unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        if text.contains("/tmp/lava_multi_node_") {
            fs::write(
                &path,
                text.replace(
                    "/tmp/lava_multi_node_cache.txt",
                    &cache.display().to_string(),
                )
                .replace(
                    "/tmp/lava_multi_node_network_cache.txt",
                    &network_cache.display().to_string(),
                ),
            )
            .unwrap();
        }
    }
    Installed {
        _dir: dir,
        tree,
        overlay,
        shell: shell.to_string(),
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check(label: &str, out: &Output, code: i32, expected_stdout: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "[{label}] exit status; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout(out), expected_stdout, "[{label}] stdout");
}

#[test]
fn lava_test_case_prints_exact_markers() {
    for (label, shell) in shells() {
        let i = install(&shell, false);
        let run = |args: &[&str]| i.run("lava-test-case", args, &[], "");
        check(
            label,
            &run(&["foo", "--result", "pass"]),
            0,
            "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=foo RESULT=pass>\n",
        );
        check(
            label,
            &run(&[
                "speed",
                "--result",
                "pass",
                "--measurement",
                "1.5",
                "--units",
                "s",
            ]),
            0,
            "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=speed RESULT=pass UNITS=s MEASUREMENT=1.5>\n",
        );
        check(
            label,
            &run(&["ok", "--shell", "true"]),
            0,
            "<LAVA_SIGNAL_STARTTC ok>\n<LAVA_SIGNAL_ENDTC ok>\n<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=ok RESULT=pass>\n",
        );
        check(
            label,
            &run(&["bad", "--shell", "false"]),
            0,
            "<LAVA_SIGNAL_STARTTC bad>\n<LAVA_SIGNAL_ENDTC bad>\n<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=bad RESULT=fail>\n",
        );
        check(
            label,
            &run(&["say", "--shell", "echo a  b; test 1 = 1"]),
            0,
            "<LAVA_SIGNAL_STARTTC say>\na b\n<LAVA_SIGNAL_ENDTC say>\n<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=say RESULT=pass>\n",
        );
        check(
            label,
            &run(&["words", "--shell", "printf", "%s|", "a b", "c"]),
            0,
            "<LAVA_SIGNAL_STARTTC words>\na b|c|<LAVA_SIGNAL_ENDTC words>\n<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=words RESULT=pass>\n",
        );
        check(
            label,
            &run(&["nores", "--units", "s"]),
            1,
            "--result must be specified\n",
        );
        assert_eq!(run(&[]).status.code(), Some(1), "[{label}] no arguments");
        assert_eq!(
            run(&["x", "--result"]).status.code(),
            Some(1),
            "[{label}] option without value"
        );
        assert_eq!(
            run(&["x", "--bogus", "1"]).status.code(),
            Some(1),
            "[{label}] unknown option"
        );

        // With LAVA_RESULT_DIR the result files are written, and --output is framed.
        let results = tempfile::tempdir().unwrap();
        let output_file = results.path().join("log.txt");
        fs::write(&output_file, "captured\n").unwrap();
        let out = i.run(
            "lava-test-case",
            &[
                "m",
                "--result",
                "fail",
                "--measurement",
                "3",
                "--units",
                "ms",
                "--output",
                &output_file.display().to_string(),
            ],
            &[("LAVA_RESULT_DIR", &results.path().display().to_string())],
            "",
        );
        check(
            label,
            &out,
            0,
            "<LAVA_SIGNAL_STARTTC m>\ncaptured\n<LAVA_SIGNAL_ENDTC m>\n<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=m RESULT=fail UNITS=ms MEASUREMENT=3>\n",
        );
        let case_dir = results.path().join("results/m");
        assert_eq!(
            fs::read_to_string(case_dir.join("result")).unwrap(),
            "fail\n"
        );
        assert_eq!(fs::read_to_string(case_dir.join("units")).unwrap(), "ms\n");
        assert_eq!(
            fs::read_to_string(case_dir.join("measurement")).unwrap(),
            "3\n"
        );
    }
}

#[test]
fn signal_helpers_print_exact_markers() {
    for (label, shell) in shells() {
        let i = install(&shell, false);
        let run = |helper: &str, args: &[&str]| i.run(helper, args, &[], "");
        check(
            label,
            &run("lava-test-set", &["start", "net"]),
            0,
            "<LAVA_SIGNAL_TESTSET START net>\n",
        );
        check(
            label,
            &run("lava-test-set", &["stop"]),
            0,
            "<LAVA_SIGNAL_TESTSET STOP>\n",
        );
        assert_eq!(run("lava-test-set", &["start"]).status.code(), Some(1));
        assert_eq!(run("lava-test-set", &["bogus"]).status.code(), Some(1));
        check(
            label,
            &run(
                "lava-test-reference",
                &[
                    "doc",
                    "--result",
                    "pass",
                    "--reference",
                    "http://example.org/x",
                ],
            ),
            0,
            "<LAVA_SIGNAL_TESTREFERENCE doc pass http://example.org/x>\n",
        );
        check(
            label,
            &run("lava-test-reference", &["doc", "--result", "pass"]),
            1,
            "--reference must be specified\n",
        );
        check(
            label,
            &run("lava-test-reference", &["doc", "--reference", "u"]),
            1,
            "--result must be specified\n",
        );
        check(
            label,
            &run("lava-test-raise", &["disk", "missing"]),
            1,
            "<LAVA_SIGNAL_TESTRAISE disk missing>\n",
        );
        assert_eq!(run("lava-test-raise", &[]).status.code(), Some(1));
        assert!(!stdout(&run("lava-test-raise", &[])).contains("LAVA_SIGNAL"));
        check(
            label,
            &run("lava-test-event", &["booted fine"]),
            0,
            "<LAVA_SIGNAL_TESTEVENT booted fine>\n",
        );
        assert_eq!(run("lava-test-event", &["a", "b"]).status.code(), Some(1));
        check(
            label,
            &run("lava-test-feedback", &["--namespace", "host"]),
            0,
            "<LAVA_SIGNAL_TESTFEEDBACK host>\n",
        );
        check(
            label,
            &run("lava-test-feedback", &[]),
            1,
            "--namespace must be specified\n",
        );
        check(label, &run("lava-target-ip", &[]), 0, "10.0.0.9\n");
        check(
            label,
            &run("lava-target-mac", &[]),
            0,
            "52:54:00:12:34:56\n",
        );
        check(label, &run("lava-probe-ip", &[]), 0, "\n");
        check(
            label,
            &run("lava-target-storage", &[]),
            0,
            "UMS\t/dev/disk/by-id/usb-1\nSATA\t/dev/disk/by-id/ata-2\n",
        );
        check(
            label,
            &run("lava-target-storage", &["SATA"]),
            0,
            "/dev/disk/by-id/ata-2\n",
        );
        check(label, &run("lava-target-storage", &["NVME"]), 1, "");
        check(
            label,
            &run("lava-echo-ipv4", &[]),
            0,
            "Specify the interface to query\n",
        );
        check(
            label,
            &run("lava-echo-ipv4", &["lo"]),
            0,
            if stdout(&run("lava-echo-ipv4", &["lo"])).is_empty() {
                ""
            } else {
                "127.0.0.1\n"
            },
        );
        assert!(run("lava-install-packages", &["curl"]).status.success());
        assert!(stdout(&run("lava-install-packages", &["curl", "jq"])).contains("- curl\n- jq\n"));
        assert!(!stdout(&run("lava-os-build", &[])).is_empty());

        // Kernel-log mode writes to /dev/kmsg instead of stdout.
        let out = i.run(
            "lava-test-case",
            &["k", "--result", "pass"],
            &[("KMSG", "true")],
            "",
        );
        assert!(
            !stdout(&out).contains("LAVA_SIGNAL"),
            "[{label}] KMSG output went to stdout"
        );

        // Background processes start and stop.
        let results = tempfile::tempdir().unwrap();
        let env = [("LAVA_RESULT_DIR", results.path().to_str().unwrap())];
        // (stdout not piped: the background command keeps it open)
        let status = Command::new(i.bin().join("lava-background-process-start"))
            .args(["sleeper", "--cmd", "sleep", "30"])
            .env("PATH", format!("{}:/usr/bin:/bin", i.bin().display()))
            .env("LAVA_RESULT_DIR", results.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "[{label}] background start");
        let pid: i32 = fs::read_to_string(results.path().join("results/sleeper/pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        assert!(
            i.run("lava-background-process-stop", &["sleeper"], &env, "")
                .status
                .success()
        );
        let gone = (0..50).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
        });
        assert!(gone, "[{label}] background process still alive");
    }
}

fn without_debug(text: &str) -> String {
    text.lines()
        .filter(|l| !l.contains("_DEBUG "))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn multinode_helpers_print_lava_markers_and_store_replies() {
    for (label, shell) in shells() {
        let i = install(&shell, true);
        let cache = i._dir.path().join("cache/mn.txt");
        let run = |helper: &str, args: &[&str], stdin: &str| i.run(helper, args, &[], stdin);

        let out = run(
            "lava-send",
            &[
                "server-ready",
                "ip=10.20.0.7",
                "junk",
                "msg=hello   world",
                "port=5201",
            ],
            "",
        );
        check(
            label,
            &Output {
                stdout: without_debug(&stdout(&out)).into_bytes(),
                ..out.clone()
            },
            0,
            "<LAVA_MULTI_NODE> <LAVA_SEND server-ready ip=10.20.0.7 msg=hello world port=5201>\n",
        );
        assert!(
            stdout(&out).contains("<LAVA_SEND_DEBUG "),
            "[{label}] debug lines are on"
        );
        let out = run("lava-send", &["k=v"], "");
        assert_eq!(out.status.code(), Some(1), "[{label}] key=value message id");
        assert!(!stdout(&out).contains("<LAVA_MULTI_NODE>"));
        assert_eq!(run("lava-send", &[], "").status.code(), Some(1));

        let reply = "noise\r\n<LAVA_WAIT_COMPLETE 7001:ip=10.20.0.7 7001:port=5201 7003:msg=a=b c>\r\nafter\n";
        let out = run("lava-wait", &["server-ready"], reply);
        check(
            label,
            &Output {
                stdout: without_debug(&stdout(&out)).into_bytes(),
                ..out.clone()
            },
            0,
            "<LAVA_MULTI_NODE> <LAVA_WAIT server-ready>\n",
        );
        assert_eq!(
            fs::read_to_string(&cache).unwrap(),
            "7001:ip=10.20.0.7\n7001:port=5201\n7003:msg=a=b c\n",
            "[{label}] cache"
        );

        let out = run(
            "lava-wait-all",
            &["done", "client"],
            "<LAVA_WAIT_ALL_COMPLETE>\n",
        );
        check(
            label,
            &Output {
                stdout: without_debug(&stdout(&out)).into_bytes(),
                ..out.clone()
            },
            0,
            "<LAVA_MULTI_NODE> <LAVA_WAIT_ALL done client>\n",
        );
        assert!(
            !cache.exists(),
            "[{label}] a reply without data leaves no cache"
        );

        let out = run(
            "lava-sync",
            &["iperf-done"],
            "<LAVA_WAIT_COMPLETE x:y=z>\n<LAVA_SYNC_COMPLETE>\n",
        );
        check(
            label,
            &Output {
                stdout: without_debug(&stdout(&out)).into_bytes(),
                ..out.clone()
            },
            0,
            "<LAVA_MULTI_NODE> <LAVA_SYNC iperf-done>\n",
        );
        assert!(!cache.exists());

        let out = run("lava-wait", &["gone"], "<LAVA_WAIT_COMPLETE nack>\n");
        assert!(out.status.success());
        assert!(
            stdout(&out).contains("Error:no-response"),
            "[{label}] nack reported"
        );

        check(
            label,
            &run("lava-group", &[], ""),
            0,
            "7001\tserver\n7002\tclient\n7003\tclient\n",
        );
        check(label, &run("lava-group", &["client"], ""), 0, "7002\n7003");
        check(label, &run("lava-group", &["server"], ""), 0, "7001");
        check(label, &run("lava-group", &["nobody"], ""), 1, "");
        check(label, &run("lava-role", &[], ""), 0, "client");
        check(
            label,
            &run("lava-role", &["list"], ""),
            0,
            "server\nclient\nclient\n",
        );
        check(label, &run("lava-self", &[], ""), 0, "7002\n");
        check(
            label,
            &run("lava-echo-config", &[], ""),
            1,
            "no shared config\n",
        );
    }
}

/// The `key=value` words of the one `<LAVA_SEND network_info ...>` marker printed.
fn network_info_sent(label: &str, out: &Output) -> Vec<(String, String)> {
    assert_eq!(
        out.status.code(),
        Some(0),
        "[{label}] broadcast; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = without_debug(&stdout(out));
    let line = text.trim_end();
    let words = line
        .strip_prefix("<LAVA_MULTI_NODE> <LAVA_SEND network_info ")
        .and_then(|rest| rest.strip_suffix('>'))
        .unwrap_or_else(|| panic!("[{label}] broadcast printed {text:?}"));
    words
        .split(' ')
        .map(|w| {
            let (k, v) = w.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn lava_network_broadcasts_collects_queries_and_writes_hosts() {
    let hostname = String::from_utf8(Command::new("hostname").output().unwrap().stdout).unwrap();
    let hostname = hostname.trim();
    for (label, shell) in shells() {
        let i = install(&shell, true);
        let run = |args: &[&str], stdin: &str| i.run("lava-network", args, &[], stdin);

        // Loopback's details through ip(8), then through busybox's ifconfig and
        // route alone (no ip on PATH): the same words.
        let sent = network_info_sent(label, &run(&["broadcast", "lo"], ""));
        let get = |key: &str| sent.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        assert_eq!(
            get("ipv4").as_deref(),
            Some("127.0.0.1"),
            "[{label}] {sent:?}"
        );
        assert_eq!(get("netmask").as_deref(), Some("255.0.0.0"), "[{label}]");
        assert_eq!(
            get("mac").as_deref(),
            Some("00:00:00:00:00:00"),
            "[{label}]"
        );
        assert_eq!(get("hostname").as_deref(), Some(hostname), "[{label}]");
        assert!(get("hostname_full").is_some(), "[{label}] {sent:?}");
        assert!(get("hostname-full").is_none(), "[{label}] word keys only");
        assert_eq!(sent[0].0, "ipv4", "[{label}] order of the words");

        let applets = i._dir.path().join("busybox-only");
        fs::create_dir_all(&applets).unwrap();
        let busybox = ["/usr/bin/busybox", "/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap();
        for applet in [
            "awk", "cat", "dirname", "hostname", "ifconfig", "mkdir", "mv", "rm", "route", "sed",
            "sh", "tr", "cut",
        ] {
            let link = applets.join(applet);
            if !link.exists() {
                std::os::unix::fs::symlink(busybox, link).unwrap();
            }
        }
        let path = format!("{}:{}", i.bin().display(), applets.display());
        let out = i.run("lava-network", &["broadcast", "lo"], &[("PATH", &path)], "");
        let via_ifconfig = network_info_sent(label, &out);
        for key in ["ipv4", "netmask", "mac", "hostname"] {
            assert_eq!(
                via_ifconfig.iter().find(|(k, _)| k == key),
                sent.iter().find(|(k, _)| k == key),
                "[{label}] {key} through ifconfig"
            );
        }

        // Nothing collected yet.
        assert_eq!(run(&["query", "7001", "ipv4"], "").status.code(), Some(1));
        assert_eq!(run(&["bogus"], "").status.code(), Some(1));

        let reply = "<LAVA_WAIT_ALL_COMPLETE 7001:ipv4=10.0.0.1 7001:hostname=srv \
            7001:hostname_full=srv.lab 7001:mac=52:54:00:00:00:01 7002:ipv4=10.0.0.2 \
            7002:hostname=c1 7003:ipv4=10.0.0.3 7003:hostname=c2 7003:dns_1=10.0.0.53>\n";
        let out = run(&["collect", "lo"], reply);
        check(
            label,
            &Output {
                stdout: without_debug(&stdout(&out)).into_bytes(),
                ..out.clone()
            },
            0,
            "<LAVA_MULTI_NODE> <LAVA_WAIT_ALL network_info>\n",
        );
        check(label, &run(&["query", "7001", "ipv4"], ""), 0, "10.0.0.1\n");
        assert!(
            !i._dir.path().join("cache/mn.txt").exists(),
            "[{label}] collect keeps lava-wait's cache out of it"
        );
        let elsewhere = i._dir.path().join("elsewhere.txt");
        let elsewhere_env = elsewhere.display().to_string();
        let env = [("LAVA_MULTI_NODE_NETWORK_CACHE", elsewhere_env.as_str())];
        let out = i.run("lava-network", &["collect"], &env, reply);
        assert!(
            out.status.success(),
            "[{label}] collect into the overridden cache"
        );
        assert!(
            fs::read_to_string(&elsewhere)
                .unwrap()
                .contains("7002:hostname=c1\n")
        );
        check(
            label,
            &run(&["query", "7001", "hostname-full"], ""),
            0,
            "srv.lab\n",
        );
        check(
            label,
            &run(&["query", "7001", "hostname_full"], ""),
            0,
            "srv.lab\n",
        );
        check(
            label,
            &run(&["query", "7001", "mac"], ""),
            0,
            "52:54:00:00:00:01\n",
        );
        check(
            label,
            &run(&["query", "7003", "dns_1"], ""),
            0,
            "10.0.0.53\n",
        );
        assert_eq!(run(&["query", "7003", "ipv6"], "").status.code(), Some(1));
        assert_eq!(run(&["query", "7009", "ipv4"], "").status.code(), Some(1));

        check(
            label,
            &run(&["hosts"], ""),
            0,
            "# lava-network hosts: begin\n10.0.0.1\tsrv.lab srv\n10.0.0.2\tc1\n10.0.0.3\tc2\n# lava-network hosts: end\n",
        );
        check(
            label,
            &run(&["alias-hosts"], ""),
            0,
            "# lava-network hosts: begin\n10.0.0.1\tsrv.lab srv server\n10.0.0.2\tc1 client-1\n10.0.0.3\tc2 client-2\n# lava-network hosts: end\n",
        );

        // A role's collect replaces that role's nodes and keeps the others.
        let reply = "<LAVA_WAIT_ALL_COMPLETE 7002:ipv4=10.0.0.2 7002:hostname=c1 \
            7003:ipv4=10.0.0.33 7003:hostname=c2new>\n";
        let out = run(&["collect", "client"], reply);
        assert!(
            stdout(&out).contains("<LAVA_MULTI_NODE> <LAVA_WAIT_ALL network_info client>\n"),
            "[{label}] {}",
            stdout(&out)
        );
        let out = run(&["collect", "eth0", "client"], reply);
        assert!(stdout(&out).contains("<LAVA_WAIT_ALL network_info client>"));
        check(
            label,
            &run(&["query", "7003", "ipv4"], ""),
            0,
            "10.0.0.33\n",
        );
        assert_eq!(run(&["query", "7003", "dns_1"], "").status.code(), Some(1));
        check(label, &run(&["query", "7002", "ipv4"], ""), 0, "10.0.0.2\n");

        // The block in a file replaces the earlier one, keeping the rest.
        let hosts = i._dir.path().join("hosts");
        fs::write(&hosts, "127.0.0.1\tlocalhost\n").unwrap();
        let hosts_arg = hosts.display().to_string();
        check(label, &run(&["hosts", &hosts_arg], ""), 0, "");
        check(label, &run(&["alias-hosts", &hosts_arg], ""), 0, "");
        assert_eq!(
            fs::read_to_string(&hosts).unwrap(),
            "127.0.0.1\tlocalhost\n# lava-network hosts: begin\n10.0.0.1\tsrv.lab srv server\n10.0.0.2\tc1 client-1\n10.0.0.33\tc2new client-2\n# lava-network hosts: end\n",
            "[{label}] hosts file"
        );

        // A role's wait released before every node of the role broadcast (LAVA's
        // coordinator releases on the first): asked again, then given up.
        let partial = "<LAVA_WAIT_ALL_COMPLETE 7003:ipv4=10.0.0.3>\n";
        let out = i.run(
            "lava-network",
            &["collect", "client"],
            &[("LAVA_NETWORK_COLLECT_TRIES", "2")],
            &format!("{partial}{partial}"),
        );
        assert_eq!(out.status.code(), Some(1), "[{label}] partial");
        assert_eq!(
            without_debug(&stdout(&out))
                .matches("<LAVA_WAIT_ALL network_info client>")
                .count(),
            2,
            "[{label}] asked twice"
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("no broadcast from 7002"));
        let out = run(&["collect", "client"], &format!("{partial}{reply}"));
        assert!(out.status.success(), "[{label}] second answer complete");

        // No reply data: collect fails and the cache is kept.
        let out = run(&["collect"], "<LAVA_WAIT_ALL_COMPLETE nack>\n");
        assert_eq!(out.status.code(), Some(1), "[{label}] nack");
        check(label, &run(&["query", "7001", "ipv4"], ""), 0, "10.0.0.1\n");
    }
}

/// What the device printed, parsed back: every TESTCASE marker's fields.
fn testcase_fields(output: &str) -> Vec<indexmap::IndexMap<String, String>> {
    let mut parser = SignalParser::new();
    parser
        .feed(output.as_bytes())
        .into_iter()
        .filter_map(|e| match e.signal {
            Signal::TestCase { fields } => Some(fields),
            _ => None,
        })
        .collect()
}

#[test]
fn runner_end_to_end_round_trips_through_parser_and_results() {
    for (label, shell) in shells() {
        let i = install(&shell, false);
        let stage = i.tree.join("0");
        let runner = i.bin().join("lava-test-runner");
        let out = Command::new(&runner)
            .arg(&stage)
            .env_clear()
            .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
            .env("SHELL", &i.shell)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = stdout(&out);
        assert!(
            out.status.success(),
            "[{label}] runner failed: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let markers: Vec<&str> = text.lines().filter(|l| l.contains("<LAVA_")).collect();
        let uuid = |n: usize| i.overlay.definitions[n].uuid.clone();
        let expected = vec![
            format!("<LAVA_SIGNAL_STARTRUN 0_smoke {}>", uuid(0)),
            "<LAVA_SIGNAL_STARTTC hello>".into(),
            "<LAVA_SIGNAL_ENDTC hello>".into(),
            "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=hello RESULT=pass>".into(),
            "<LAVA_SIGNAL_STARTTC args>".into(),
            "<LAVA_SIGNAL_ENDTC args>".into(),
            "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=args RESULT=pass>".into(),
            "<LAVA_SIGNAL_TESTSET START numbers>".into(),
            "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=speed RESULT=pass UNITS=MB/s MEASUREMENT=12.5>"
                .into(),
            "<LAVA_SIGNAL_TESTSET STOP>".into(),
            "<LAVA_SIGNAL_STARTTC broken>".into(),
            "<LAVA_SIGNAL_ENDTC broken>".into(),
            "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=broken RESULT=fail>".into(),
            "<LAVA_SIGNAL_TESTREFERENCE ref pass http://example.org/r>".into(),
            format!("<LAVA_SIGNAL_ENDRUN 0_smoke {}>", uuid(0)),
            "<LAVA_TEST_RUNNER INSTALL_FAIL>".into(),
            format!("<LAVA_SIGNAL_STARTRUN 2_after {}>", uuid(2)),
            "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=later RESULT=pass>".into(),
            "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=surprise RESULT=pass>".into(),
            format!("<LAVA_SIGNAL_ENDRUN 2_after {}>", uuid(2)),
            "<LAVA_TEST_RUNNER EXIT>".into(),
        ];
        assert_eq!(markers, expected, "[{label}] markers\n{text}");
        assert!(
            text.contains("\nhello job's value\n"),
            "[{label}] parameters reach the steps"
        );

        // The runner renamed its list and wrote return codes.
        assert!(!stage.join("lava-test-runner.conf").exists());
        let results: Vec<PathBuf> = fs::read_dir(stage.join("results"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let smoke = results
            .iter()
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("0_smoke-")
            })
            .unwrap();
        assert_eq!(
            fs::read_to_string(smoke.join("return_code")).unwrap(),
            "0\n"
        );
        assert_eq!(
            fs::read_to_string(smoke.join("results/speed/measurement")).unwrap(),
            "12.5\n"
        );
        let install = results
            .iter()
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("1_needs-install-")
            })
            .unwrap();
        assert_eq!(
            fs::read_to_string(install.join("install_return_code")).unwrap(),
            "1\n"
        );

        // Feed the console text through the parser and the results builder.
        let mut parser = SignalParser::new();
        let mut builder = ResultsBuilder::new("common", 0, "3.1", &i.overlay.definitions);
        let mut outputs = Vec::new();
        for chunk in text.as_bytes().chunks(7) {
            for event in parser.feed(chunk) {
                outputs.extend(builder.handle(&event));
            }
        }
        outputs.extend(builder.finish());
        let records: Vec<&ResultRecord> = outputs
            .iter()
            .filter_map(|o| match o {
                ShellOutput::Result(r) => Some(r),
                _ => None,
            })
            .collect();
        let summary: Vec<(String, String, String)> = records
            .iter()
            .map(|r| {
                (
                    r.definition().unwrap().to_string(),
                    r.case().unwrap().to_string(),
                    r.result().unwrap().to_string(),
                )
            })
            .collect();
        let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(
            summary,
            vec![
                s("0_smoke", "hello", "pass"),
                s("0_smoke", "args", "pass"),
                s("0_smoke", "speed", "pass"),
                s("0_smoke", "broken", "fail"),
                s("0_smoke", "ref", "pass"),
                s("lava", "0_smoke", "pass"),
                s("2_after", "later", "pass"),
                s("2_after", "surprise", "fail"),
                s("2_after", "missing-one", "fail"),
                s("lava", "2_after", "pass"),
                // No `stage_0` record: as in LAVA, the later STARTRUN replaced it.
            ],
            "[{label}]"
        );
        let speed = records[2];
        assert_eq!(speed.0["measurement"], serde_yaml::Value::from(12.5));
        assert_eq!(speed.0["units"], "MB/s");
        assert_eq!(speed.0["set"], "numbers");
        assert_eq!(records[4].0["reference"], "http://example.org/r");
        let suite = records[5];
        let keys: Vec<&str> = suite.0.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "definition",
                "case",
                "uuid",
                "repository",
                "path",
                "duration",
                "result",
                "revision",
                "namespace"
            ]
        );
        assert_eq!(suite.0["revision"], "unspecified");
        assert!(
            matches!(outputs.last(), Some(ShellOutput::Error(e)) if e.to_string() == "Unable to start test stage 0")
        );
        assert!(outputs.iter().any(|o| matches!(o, ShellOutput::Finished)));
        assert_eq!(testcase_fields(&text).len(), 6);
    }
}
