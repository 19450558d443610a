//! Overlay tree and generated scripts against our fixtures in `fixtures/overlay/`,
//! git definitions from a local repository, path-traversal refusals, tarball
//! reproducibility.
//!
//! Set `LAVA_SHELL_UPDATE_FIXTURES=1` to rewrite the fixtures (then review the diff).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lava_error::ErrorKind;
use lava_shell::fetch::GitClient;
use lava_shell::tarball::build_tarball;
use lava_shell::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/overlay")
}

fn check_fixture(name: &str, actual: &str) {
    let path = fixtures().join(name);
    if std::env::var_os("LAVA_SHELL_UPDATE_FIXTURES").is_some() {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, actual).unwrap();
        return;
    }
    let expected =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    assert_eq!(actual, expected, "fixture {name} differs");
}

fn yaml(text: &str) -> serde_yaml::Value {
    serde_yaml::from_str(text).unwrap()
}

fn planned(entry: &str, level: &str) -> PlannedDefinition {
    PlannedDefinition {
        source: DefinitionSource::from_value(&yaml(entry)).unwrap(),
        repo_action_level: level.into(),
    }
}

fn quick_git() -> OverlayBuilder {
    OverlayBuilder {
        git: GitClient {
            attempts: 1,
            retry_delay: Duration::ZERO,
            ..GitClient::default()
        },
        ..OverlayBuilder::default()
    }
}

const INLINE_SMOKE: &str = r#"
from: inline
name: smoke
path: inline/smoke.yaml
parameters:
  IFACE: eth1
  HOSTILE: "it's $(reboot) `id`; rm -rf /"
repository:
  metadata:
    format: Lava-Test Test Definition 1.0
    name: smoke
    description: basic checks
    os: [debian]
    devices: [qemu]
  params:
    IFACE: eth0
    EMPTY: null
  install:
    keys: [ABCD1234]
    sources: ["deb http://deb.example.org/debian bookworm main"]
    deps: [iperf3, curl]
    deps-debian: [ethtool]
    steps: ["make -C tools"]
  run:
    steps:
      - lava-test-case link-up --shell ip link show $IFACE
      - lava-test-case args --shell 'echo $1 $23'
      - echo $1 stays
      - null
      - lava-test-case true --result pass
  parse:
    pattern: '(?P<test_case_id>\S+):\s+(?P<result>PASS|FAIL)'
    fixupdict: {PASS: pass, FAIL: fail}
"#;

const INLINE_KMSG: &str = r#"
from: inline
name: kmsg-run
path: kmsg.yaml
lava-signal: kmsg
skip_install: [deps, steps]
repository:
  metadata: {format: Lava-Test Test Definition 1.0, name: kmsg-run}
  install: {deps: [x], steps: [y], sources: [s]}
  run: {steps: [lava-test-case a --result fail]}
"#;

fn base_request() -> OverlayRequest {
    OverlayRequest {
        job_id: "1234".into(),
        namespace: "common".into(),
        constants: ShellConstants {
            distro: Some("debian".into()),
            ..ShellConstants::default()
        },
        test_blocks: vec![
            TestBlock {
                definitions: vec![planned(INLINE_SMOKE, "1.4.2.1")],
                needs_character_delay: true,
            },
            TestBlock {
                definitions: vec![planned(INLINE_KMSG, "1.4.2.5")],
                needs_character_delay: false,
            },
        ],
        environment: EnvironmentInputs {
            job_environment: Some(yaml("{FOO: bar baz}")),
            dispatcher_ip: "10.0.0.1".into(),
            ..Default::default()
        },
        secrets: Some(
            [("API_TOKEN".to_string(), "s3cret".to_string())]
                .into_iter()
                .collect(),
        ),
        baked: BakedValues {
            target_ip: "10.0.0.9".into(),
            ..Default::default()
        },
        character_delay_ms: 100,
        ..Default::default()
    }
}

/// `mode path` lines for every entry below `root`, sorted.
fn listing(root: &Path) -> String {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let meta = fs::symlink_metadata(&path).unwrap();
            use std::os::unix::fs::PermissionsExt;
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if meta.is_dir() {
                out.push(format!("d {rel}/"));
                walk(&path, root, out);
            } else {
                let exec = if meta.permissions().mode() & 0o111 != 0 {
                    "x"
                } else {
                    "f"
                };
                out.push(format!("{exec} {rel}"));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.join("\n") + "\n"
}

#[test]
fn inline_overlay_matches_fixtures() {
    let location = tempfile::tempdir().unwrap();
    let overlay = OverlayBuilder::default()
        .build(&base_request(), location.path())
        .unwrap();
    assert_eq!(overlay.results_dir, "/lava-1234");
    assert_eq!(overlay.tree, location.path().join("lava-1234"));
    assert_eq!(
        overlay.runner_command(1),
        "/lava-1234/bin/lava-test-runner /lava-1234/1"
    );
    assert_eq!(overlay.environment_command(), ". /lava-1234/environment");
    assert_eq!(overlay.shell_export_command(), "export SHELL=/bin/sh");

    check_fixture("tree.txt", &listing(location.path()));
    let tree = &overlay.tree;
    let smoke = tree.join("0/tests/0_smoke");
    check_fixture(
        "0_smoke/run.sh",
        &fs::read_to_string(smoke.join("run.sh")).unwrap(),
    );
    check_fixture(
        "0_smoke/install.sh",
        &fs::read_to_string(smoke.join("install.sh")).unwrap(),
    );
    check_fixture(
        "0_smoke/testdef_metadata",
        &fs::read_to_string(smoke.join("testdef_metadata")).unwrap(),
    );
    check_fixture(
        "1_kmsg-run/run.sh",
        &fs::read_to_string(tree.join("1/tests/1_kmsg-run/run.sh")).unwrap(),
    );
    check_fixture(
        "1_kmsg-run/install.sh",
        &fs::read_to_string(tree.join("1/tests/1_kmsg-run/install.sh")).unwrap(),
    );
    check_fixture(
        "environment",
        &fs::read_to_string(tree.join("environment")).unwrap(),
    );
    check_fixture(
        "lava-target-ip",
        &fs::read_to_string(tree.join("bin/lava-target-ip")).unwrap(),
    );

    assert_eq!(
        fs::read_to_string(smoke.join("uuid")).unwrap(),
        "1234_1.4.2.1"
    );
    assert_eq!(
        fs::read_to_string(tree.join("0/lava-test-runner.conf")).unwrap(),
        "/lava-1234/0/tests/0_smoke\n"
    );
    assert_eq!(
        fs::read_to_string(tree.join("1/lava-test-runner.conf")).unwrap(),
        "/lava-1234/1/tests/1_kmsg-run\n"
    );
    assert_eq!(
        fs::read_to_string(tree.join("secrets")).unwrap(),
        "API_TOKEN=s3cret\n"
    );
    let dumped: serde_yaml::Value =
        serde_yaml::from_str(&fs::read_to_string(smoke.join("inline/smoke.yaml")).unwrap())
            .unwrap();
    assert_eq!(dumped, yaml(INLINE_SMOKE)["repository"]);

    let first = &overlay.definitions[0];
    assert_eq!(
        (
            first.index,
            first.stage,
            first.test_name.as_str(),
            first.uuid.as_str()
        ),
        (0, 0, "0_smoke", "1234_1.4.2.1")
    );
    assert_eq!(first.runner_path, "/lava-1234/0/tests/0_smoke");
    assert!(first.pattern.is_some());
    assert_eq!(overlay.definitions[1].test_name, "1_kmsg-run");
}

#[test]
fn hostile_parameters_stay_data_when_sourced() {
    let location = tempfile::tempdir().unwrap();
    let overlay = OverlayBuilder::default()
        .build(&base_request(), location.path())
        .unwrap();
    let run = fs::read_to_string(overlay.tree.join("0/tests/0_smoke/run.sh")).unwrap();
    let header: String = run
        .lines()
        .take_while(|l| *l != "set -e")
        .map(|l| format!("{l}\n"))
        .collect();
    let script = format!("{header}printf '%s|%s|%s' \"$IFACE\" \"$HOSTILE\" \"$EMPTY\"\n");
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "eth1|it's $(reboot) `id`; rm -rf /|"
    );
}

#[test]
fn hostile_names_and_paths_are_refused() {
    let location = tempfile::tempdir().unwrap();
    let cases = [
        (
            "from: inline\nname: '../../etc'\npath: a.yaml\nrepository: {metadata: {name: x}}",
            "name",
        ),
        (
            "from: inline\nname: 'x; reboot'\npath: a.yaml\nrepository: {metadata: {name: x}}",
            "name",
        ),
        (
            "from: inline\nname: lava\npath: a.yaml\nrepository: {metadata: {name: x}}",
            "reserved",
        ),
        (
            "from: inline\nname: ok\npath: ../../escape.yaml\nrepository: {metadata: {name: x}}",
            "path",
        ),
        (
            "from: inline\nname: ok\npath: /etc/passwd\nrepository: {metadata: {name: x}}",
            "path",
        ),
        (
            "from: inline\nname: ok\npath: a.yaml\nparameters: {'X=1; reboot; Y': z}\nrepository: {metadata: {name: x}}",
            "param",
        ),
    ];
    for (entry, what) in cases {
        let result = DefinitionSource::from_value(&yaml(entry));
        assert!(result.is_err(), "{what}: accepted {entry}");
    }
    // Duplicate names across blocks of a namespace.
    let entry = "from: inline\nname: dup\npath: a.yaml\nrepository: {metadata: {name: x}}";
    let request = OverlayRequest {
        job_id: "1".into(),
        test_blocks: vec![
            TestBlock {
                definitions: vec![planned(entry, "1.1")],
                needs_character_delay: false,
            },
            TestBlock {
                definitions: vec![planned(entry, "1.2")],
                needs_character_delay: false,
            },
        ],
        ..Default::default()
    };
    let err = OverlayBuilder::default()
        .build(&request, location.path())
        .unwrap_err();
    assert!(matches!(err, ShellError::DuplicateName(_)), "{err}");
    assert_eq!(err.kind(), ErrorKind::Job);
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn git_output(dir: &Path, args: &[&str]) -> String {
    String::from_utf8(
        Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string()
}

/// A repository with two commits on `main` and a `stable` branch.
fn make_repo(root: &Path) -> (PathBuf, String, String) {
    let repo = root.join("tests-repo");
    fs::create_dir_all(repo.join("defs")).unwrap();
    git(&repo, &["init", "-q"]);
    fs::write(repo.join("defs/smoke.yaml"), "metadata:\n  format: Lava-Test Test Definition 1.0\n  name: smoke\nrun:\n  steps: [echo first]\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    let first = git_output(&repo, &["rev-parse", "HEAD"]);
    git(&repo, &["branch", "stable"]);
    fs::write(repo.join("defs/smoke.yaml"), "metadata:\n  format: Lava-Test Test Definition 1.0\n  name: smoke\nrun:\n  steps: [echo second]\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", repo.join("defs/evil.yaml")).unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "second"]);
    let second = git_output(&repo, &["rev-parse", "HEAD"]);
    (repo, first, second)
}

fn git_request(entry: &str) -> OverlayRequest {
    OverlayRequest {
        job_id: "77".into(),
        test_blocks: vec![TestBlock {
            definitions: vec![planned(entry, "1.3.2.1")],
            needs_character_delay: false,
        }],
        ..Default::default()
    }
}

#[test]
fn git_definitions_clone_at_branch_and_revision() {
    let work = tempfile::tempdir().unwrap();
    let (repo, first, second) = make_repo(work.path());
    let url = format!("file://{}", repo.display());

    let location = tempfile::tempdir().unwrap();
    let entry = format!("from: git\nname: smoke\npath: defs/smoke.yaml\nrepository: '{url}'\n");
    let overlay = quick_git()
        .build(&git_request(&entry), location.path())
        .unwrap();
    let def = &overlay.definitions[0];
    assert_eq!(def.commit_id.as_deref(), Some(second.as_str()));
    assert_eq!(def.metadata.branch_vcs, "git");
    assert!(
        def.overlay_path.join(".git").is_dir(),
        "history defaults to true"
    );
    let run = fs::read_to_string(def.overlay_path.join("run.sh")).unwrap();
    assert!(run.contains("\necho second\n"));
    let metadata = fs::read_to_string(def.overlay_path.join("testdef_metadata")).unwrap();
    assert!(
        metadata.contains(&format!("commit_id: {second}")),
        "{metadata}"
    );

    let location = tempfile::tempdir().unwrap();
    let entry = format!(
        "from: git\nname: smoke\npath: defs/smoke.yaml\nrepository: '{url}'\nrevision: {first}\nhistory: false\n"
    );
    let overlay = quick_git()
        .build(&git_request(&entry), location.path())
        .unwrap();
    let def = &overlay.definitions[0];
    assert_eq!(def.commit_id.as_deref(), Some(first.as_str()));
    assert!(
        !def.overlay_path.join(".git").exists(),
        "history: false removes .git"
    );
    assert!(
        fs::read_to_string(def.overlay_path.join("run.sh"))
            .unwrap()
            .contains("\necho first\n")
    );

    let location = tempfile::tempdir().unwrap();
    let entry = format!(
        "from: git\nname: smoke\npath: defs/smoke.yaml\nrepository: '{url}'\nbranch: stable\n"
    );
    let overlay = quick_git()
        .build(&git_request(&entry), location.path())
        .unwrap();
    assert_eq!(
        overlay.definitions[0].commit_id.as_deref(),
        Some(first.as_str())
    );
}

#[test]
fn git_failures_and_escaping_symlinks_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let (repo, _, _) = make_repo(work.path());
    let url = format!("file://{}", repo.display());

    let location = tempfile::tempdir().unwrap();
    let entry = format!("from: git\nname: smoke\npath: defs/evil.yaml\nrepository: '{url}'\n");
    let err = quick_git()
        .build(&git_request(&entry), location.path())
        .unwrap_err();
    assert!(matches!(err, ShellError::UnsafePath { .. }), "{err}");

    let entry = format!("from: git\nname: smoke\npath: defs/missing.yaml\nrepository: '{url}'\n");
    let err = quick_git()
        .build(&git_request(&entry), tempfile::tempdir().unwrap().path())
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Unable to open test definition 'defs/missing.yaml'"),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Job);

    let entry = format!(
        "from: git\nname: smoke\npath: defs/smoke.yaml\nrepository: '{}/nope'\n",
        url
    );
    let err = quick_git()
        .build(&git_request(&entry), tempfile::tempdir().unwrap().path())
        .unwrap_err();
    assert!(matches!(err, ShellError::GitFailed { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Infrastructure);

    let missing_git = OverlayBuilder {
        git: GitClient {
            binary: "/nonexistent/git".into(),
            attempts: 1,
            ..GitClient::default()
        },
        ..OverlayBuilder::default()
    };
    let entry = format!("from: git\nname: smoke\npath: defs/smoke.yaml\nrepository: '{url}'\n");
    let err = missing_git
        .build(&git_request(&entry), tempfile::tempdir().unwrap().path())
        .unwrap_err();
    assert!(matches!(err, ShellError::GitMissing(_)), "{err}");
}

#[test]
fn install_git_repos_are_cloned_and_destinations_checked() {
    let work = tempfile::tempdir().unwrap();
    let (repo, _, _) = make_repo(work.path());
    let url = format!("file://{}", repo.display());
    let entry = format!(
        "from: inline\nname: tools\npath: t.yaml\nparameters: {{DEST: picked}}\nrepository:\n  metadata: {{name: tools}}\n  params: {{DEST: default}}\n  install:\n    git-repos:\n      - '{url}'\n      - {{url: '{url}', destination: DEST}}\n"
    );
    let location = tempfile::tempdir().unwrap();
    let overlay = quick_git()
        .build(&git_request(&entry), location.path())
        .unwrap();
    let dir = &overlay.definitions[0].overlay_path;
    assert!(dir.join("tests-repo/defs/smoke.yaml").is_file());
    assert!(dir.join("picked/defs/smoke.yaml").is_file());

    for bad in ["../outside", "a/b", "/tmp/x"] {
        let entry = format!(
            "from: inline\nname: tools\npath: t.yaml\nrepository:\n  metadata: {{name: tools}}\n  install:\n    git-repos:\n      - {{url: '{url}', destination: '{bad}'}}\n"
        );
        let err = quick_git()
            .build(&git_request(&entry), tempfile::tempdir().unwrap().path())
            .unwrap_err();
        assert!(
            err.to_string().contains("Destination path is unacceptable"),
            "{bad}: {err}"
        );
    }
}

fn write_tar(path: &Path, entries: &[(&str, tar::EntryType, &str)]) {
    let file = fs::File::create(path).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut builder = tar::Builder::new(gz);
    for (name, kind, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_mode(0o644);
        {
            // Write the raw name so that hostile names reach the archive.
            let gnu = header.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        }
        if *kind == tar::EntryType::Symlink {
            header.set_link_name(data).unwrap();
            header.set_size(0);
            header.set_cksum();
            builder.append(&header, std::io::empty()).unwrap();
        } else {
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append(&header, data.as_bytes()).unwrap();
        }
    }
    builder.into_inner().unwrap().finish().unwrap();
}

#[test]
fn url_archives_unpack_and_refuse_traversal() {
    let work = tempfile::tempdir().unwrap();
    let good = work.path().join("good.tar.gz");
    write_tar(
        &good,
        &[
            ("top/", tar::EntryType::Directory, ""),
            (
                "top/defs/smoke.yaml",
                tar::EntryType::Regular,
                "metadata: {name: smoke}\nrun: {steps: [echo url]}\n",
            ),
            ("top/link.yaml", tar::EntryType::Symlink, "defs/smoke.yaml"),
        ],
    );
    let entry = format!(
        "from: url\nname: smoke\npath: defs/smoke.yaml\nrepository: 'file://{}'\nstrip-components: 1\n",
        good.display()
    );
    let location = tempfile::tempdir().unwrap();
    let overlay = quick_git()
        .build(&git_request(&entry), location.path())
        .unwrap();
    let def = &overlay.definitions[0];
    assert_eq!(def.metadata.branch_vcs, "url");
    assert!(
        fs::read_to_string(def.overlay_path.join("run.sh"))
            .unwrap()
            .contains("\necho url\n")
    );

    for (name, hostile) in [
        (
            "dotdot",
            vec![("../../evil.sh", tar::EntryType::Regular, "x")],
        ),
        (
            "absolute",
            vec![("/tmp/lava-shell-evil", tar::EntryType::Regular, "x")],
        ),
        (
            "symlink-out",
            vec![("out", tar::EntryType::Symlink, "/etc")],
        ),
        (
            "symlink-up",
            vec![("d/out", tar::EntryType::Symlink, "../../..")],
        ),
    ] {
        let archive = work.path().join(format!("{name}.tar.gz"));
        write_tar(&archive, &hostile);
        let entry = format!(
            "from: url\nname: smoke\npath: defs/smoke.yaml\nrepository: 'file://{}'\n",
            archive.display()
        );
        let location = tempfile::tempdir().unwrap();
        let err = quick_git()
            .build(&git_request(&entry), location.path())
            .unwrap_err();
        assert!(
            matches!(err, ShellError::UnsafePath { .. }),
            "{name}: {err}"
        );
    }
    assert!(!Path::new("/tmp/lava-shell-evil").exists());

    let entry = "from: url\nname: smoke\npath: defs/smoke.yaml\nrepository: 'ftp://example.invalid/t.tgz'\n";
    let err = quick_git()
        .build(&git_request(entry), tempfile::tempdir().unwrap().path())
        .unwrap_err();
    assert!(matches!(err, ShellError::Unsupported(_)), "{err}");
}

#[test]
fn url_archives_are_fetched_over_http() {
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("tests.tar.gz");
    write_tar(
        &archive,
        &[(
            "defs/smoke.yaml",
            tar::EntryType::Regular,
            "metadata: {name: smoke}\nrun: {steps: [echo over http]}\n",
        )],
    );
    let body = fs::read(&archive).unwrap();
    let server = serve_once(body);
    let url = format!("{server}/archives/tests.tar.gz");
    let entry = format!("from: url\nname: smoke\npath: defs/smoke.yaml\nrepository: '{url}'\n");
    let location = tempfile::tempdir().unwrap();
    let overlay = quick_git()
        .build(&git_request(&entry), location.path())
        .unwrap();
    let def = &overlay.definitions[0];
    assert_eq!(def.metadata.branch_vcs, "url");
    assert!(
        fs::read_to_string(def.overlay_path.join("run.sh"))
            .unwrap()
            .contains("\necho over http\n")
    );
    // The server is gone: the same definition now fails, naming its URL.
    let err = quick_git()
        .build(&git_request(&entry), tempfile::tempdir().unwrap().path())
        .unwrap_err();
    assert!(matches!(err, ShellError::DownloadFailed { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("Unable to download {url}: ")),
        "{err}"
    );
}

/// An HTTP server on 127.0.0.1 (a tokio listener on a thread of its own) answering one
/// request with `body`, then closing; returns `http://127.0.0.1:PORT`.
fn serve_once(body: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            let header = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(header.as_bytes()).await.unwrap();
            stream.write_all(&body).await.unwrap();
            stream.shutdown().await.unwrap();
        })
    });
    base
}

#[test]
fn tarballs_are_reproducible() {
    let build = || {
        let location = tempfile::tempdir().unwrap();
        let overlay = OverlayBuilder::default()
            .build(&base_request(), location.path())
            .unwrap();
        let out = tempfile::tempdir().unwrap();
        let tarball = build_tarball(
            &overlay.location,
            &overlay.results_dir,
            &out.path().join("overlay.tar.gz"),
        )
        .unwrap();
        (fs::read(&tarball.path).unwrap(), tarball, location, out)
    };
    let (first, info, _l1, _o1) = build();
    std::thread::sleep(Duration::from_millis(1100));
    let (second, _, _l2, _o2) = build();
    assert_eq!(first, second, "two builds differ");
    assert_eq!(info.size, first.len() as u64);

    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&first[..]));
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        let name = entry.path().unwrap().display().to_string();
        assert_eq!(header.mtime().unwrap(), 0);
        assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
        assert_eq!(header.username().unwrap(), Some("root"));
        if name.starts_with("lava-1234/bin/lava-") {
            assert_eq!(header.mode().unwrap(), 0o755, "{name}");
        }
        names.push(name);
    }
    assert_eq!(names[0], "lava-1234/");
    assert!(names.contains(&"lava-1234/0/tests/0_smoke/run.sh".to_string()));
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "members are in sorted order");
}

#[tokio::test]
async fn async_builders_run_off_the_runtime() {
    let location = tempfile::tempdir().unwrap();
    let overlay = OverlayBuilder::default()
        .build_async(base_request(), location.path().to_path_buf())
        .await
        .unwrap();
    let out = location.path().join("o.tar.gz");
    let tarball = lava_shell::tarball::build_tarball_async(
        overlay.location.clone(),
        overlay.results_dir.clone(),
        out,
    )
    .await
    .unwrap();
    assert_eq!(tarball.sha256.len(), 64);
}
