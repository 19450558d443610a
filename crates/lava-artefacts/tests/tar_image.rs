//! A tar image with overlays appended (`append-overlays`, `format: tar`), read back with
//! GNU tar.

use std::path::{Path, PathBuf};
use std::process::Command;

use lava_artefacts::ramdisk::OverlaySource;
use lava_artefacts::tar_image::append_overlays_blocking;
use lava_artefacts::{Compression, Fault};
use lava_test_support::ci::require_tool;

fn run(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The image's tree: a long path (GNU long name), a symlink, a file with an owner.
const LONG: &str = "usr/share/a-directory-with-a-rather-long-name/and-another-rather-long-directory-name/and-a-file-name-past-one-hundred";

fn image_tree(root: &Path) {
    for dir in ["etc", "bin", "usr/lib"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("etc/issue"), "image issue\n").unwrap();
    std::fs::write(root.join("bin/busybox"), vec![7u8; 5000]).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    let long = root.join(LONG);
    std::fs::create_dir_all(long.parent().unwrap()).unwrap();
    std::fs::write(&long, "long\n").unwrap();
}

/// The test overlay: `lava-7/bin/lava-test-runner` (0755, owner 1234:5678), a replaced
/// `etc/issue` and a symlink.
fn overlay_tarball(tmp: &Path) -> PathBuf {
    let tree = tmp.join("overlay-tree");
    std::fs::create_dir_all(tree.join("lava-7/bin")).unwrap();
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("lava-7/bin/lava-test-runner"), "#!/bin/sh\n").unwrap();
    std::fs::write(tree.join("etc/issue"), "overlay issue\n").unwrap();
    std::os::unix::fs::symlink("lava-test-runner", tree.join("lava-7/bin/runner")).unwrap();
    run(&tree, &["chmod", "0755", "lava-7/bin/lava-test-runner"]);
    let out = tmp.join("overlay.tar.gz");
    run(
        &tree,
        &[
            "tar",
            "--numeric-owner",
            "--owner=1234",
            "--group=5678",
            "-czf",
            out.to_str().unwrap(),
            "lava-7",
            "etc",
        ],
    );
    out
}

/// `tar -tv` lines (mode, owner, size, name; no times) of an archive.
fn listing(archive: &Path) -> Vec<String> {
    run(
        archive.parent().unwrap(),
        &["tar", "--numeric-owner", "-tvf", archive.to_str().unwrap()],
    )
    .lines()
    .map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        format!("{} {} {} {}", f[0], f[1], f[2], f[5..].join(" "))
    })
    .collect()
}

#[test]
fn overlays_are_merged_into_a_tar_image_and_read_back_by_gnu_tar() {
    if !require_tool("tar", "apt-get install tar") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let root = tmp.join("image-tree");
    image_tree(&root);
    let image = tmp.join("rootfs.tar.gz");
    run(
        &root,
        &[
            "tar",
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "-czf",
            image.to_str().unwrap(),
            ".",
        ],
    );
    let overlay = overlay_tarball(tmp);
    let extra = tmp.join("extra.bin");
    std::fs::write(&extra, "extra\n").unwrap();
    let overlays = [
        OverlaySource::Tarball {
            archive: overlay,
            at: "/".into(),
        },
        OverlaySource::File {
            file: extra,
            at: "/opt/extra/file.bin".into(),
        },
    ];
    let done = append_overlays_blocking(&image, &overlays, Some(Compression::Gz), &image).unwrap();
    assert_eq!(done.path, image);
    assert!(!image.with_extension("partial").exists());

    let out = tmp.join("out");
    std::fs::create_dir(&out).unwrap();
    run(&out, &["tar", "-xzf", image.to_str().unwrap()]);
    let read = |p: &str| std::fs::read_to_string(out.join(p)).unwrap();
    assert_eq!(
        read("etc/issue"),
        "overlay issue\n",
        "the overlay wins a path"
    );
    assert_eq!(read(LONG), "long\n", "a GNU long name is kept");
    assert_eq!(read("lava-7/bin/lava-test-runner"), "#!/bin/sh\n");
    assert_eq!(read("opt/extra/file.bin"), "extra\n");
    assert_eq!(
        std::fs::read(out.join("bin/busybox")).unwrap(),
        vec![7u8; 5000]
    );
    assert_eq!(
        std::fs::read_link(out.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        std::fs::read_link(out.join("lava-7/bin/runner")).unwrap(),
        Path::new("lava-test-runner")
    );

    run(tmp, &["gzip", "-dkf", image.to_str().unwrap()]);
    let lines = listing(&tmp.join("rootfs.tar"));
    let line = |name: &str| {
        lines
            .iter()
            .find(|l| l.ends_with(&format!(" {name}")) || l.contains(&format!(" {name} -> ")))
            .unwrap_or_else(|| panic!("{name} not in {lines:#?}"))
            .clone()
    };
    assert!(
        line("lava-7/bin/lava-test-runner").starts_with("-rwxr-xr-x 1234/5678 10 "),
        "modes and owners kept: {lines:#?}"
    );
    assert!(line("lava-7/bin/runner").starts_with("lrwxrwxrwx 1234/5678 0 "));
    assert!(line("opt/").starts_with("drwxr-xr-x 0/0 "), "a parent made");
    assert!(line("opt/extra/file.bin").starts_with("-rw-r--r-- 0/0 6 "));
    assert!(line("./bin/busybox").starts_with("-rw-r--r-- 0/0 5000 "));
    let issues = lines.iter().filter(|l| l.contains("etc/issue")).count();
    assert_eq!(issues, 1, "the replaced member is left out: {lines:#?}");
    assert_eq!(done.entries, lines.len());
    // New paths: lava-7, lava-7/bin, its two members, opt, opt/extra, the file.
    assert_eq!(done.added, 7, "{lines:#?}");
}

#[test]
fn without_overlays_a_tar_image_is_copied_member_for_member() {
    if !require_tool("tar", "apt-get install tar") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let root = tmp.join("image-tree");
    image_tree(&root);
    for format in ["gnu", "pax"] {
        let image = tmp.join(format!("{format}.tar"));
        run(
            &root,
            &[
                "tar",
                &format!("--format={format}"),
                "-cf",
                image.to_str().unwrap(),
                ".",
            ],
        );
        let before = std::fs::read(&image).unwrap();
        let copy = tmp.join(format!("{format}-copy.tar"));
        let done = append_overlays_blocking(&image, &[], None, &copy).unwrap();
        assert_eq!(done.added, 0);
        let after = std::fs::read(&copy).unwrap();
        let members_end = after.len() - 1024;
        assert_eq!(
            after[..members_end],
            before[..members_end],
            "{format}: headers and data byte for byte"
        );
        assert_eq!(listing(&copy), listing(&image));
    }
}

#[test]
fn an_overlay_leaving_the_image_is_refused_and_the_image_is_unchanged() {
    if !require_tool("tar", "apt-get install tar") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let root = tmp.join("image-tree");
    image_tree(&root);
    let image = tmp.join("rootfs.tar");
    run(&root, &["tar", "-cf", image.to_str().unwrap(), "."]);
    let before = std::fs::read(&image).unwrap();
    let evil = tmp.join("evil.tar");
    run(
        tmp,
        &[
            "tar",
            "-cf",
            evil.to_str().unwrap(),
            "--transform=s,^,../../,",
            "image-tree/etc/issue",
        ],
    );
    let overlays = [OverlaySource::Tarball {
        archive: evil,
        at: "/".into(),
    }];
    let err = append_overlays_blocking(&image, &overlays, None, &image).unwrap_err();
    assert_eq!(err.fault(), Fault::Input, "{err}");
    assert_eq!(std::fs::read(&image).unwrap(), before);
    assert!(!image.with_extension("partial").exists());

    // A corrupt image is the input's fault too, and leaves nothing behind.
    let corrupt = tmp.join("corrupt.tar");
    std::fs::write(&corrupt, &before[..700]).unwrap();
    let err = append_overlays_blocking(&corrupt, &[], None, &corrupt).unwrap_err();
    assert_eq!(err.fault(), Fault::Input, "{err}");
    assert!(!corrupt.with_extension("partial").exists());
}
