//! cpio newc archives and the ramdisk repacked with an overlay.

use lava_artefacts::newc::{checked_member, read_newc, write_newc};
use lava_artefacts::ramdisk::{merge_overlay, repack_with_overlay};
use lava_artefacts::tar::{TarMember, read_tar};
use lava_artefacts::{Compression, Fault};

use lava_test_support::artefacts::{compress, cpio_entry, gunzip, sample};

#[test]
fn cpio_round_trip_and_traversal_refusal() {
    let entries = vec![
        cpio_entry(".", 0o40755, 1, b""),
        cpio_entry("bin", 0o40755, 2, b""),
        cpio_entry("bin/busybox", 0o100755, 3, &sample(1001)),
        cpio_entry("bin/sh", 0o120777, 4, b"busybox"),
        cpio_entry("init", 0o100755, 5, b"#!/bin/sh\nexec sh\n"),
    ];
    let bytes = write_newc(&entries);
    assert_eq!(bytes.len() % 512, 0);
    let back = read_newc(&bytes).unwrap();
    assert_eq!(back, entries);
    assert_eq!(write_newc(&back), bytes);
    // Two archives back to back (as in initramfs images with early firmware).
    let mut two = bytes.clone();
    two.extend(write_newc(&[cpio_entry("extra", 0o100644, 9, b"x")]));
    assert_eq!(read_newc(&two).unwrap().len(), 6);
    // Interoperates with the system cpio when present.
    if let Ok(out) = std::process::Command::new("cpio").arg("--version").output()
        && out.status.success()
    {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a.cpio"), &bytes).unwrap();
        let list = std::process::Command::new("sh")
            .arg("-c")
            .arg("cpio -it < a.cpio 2>/dev/null")
            .current_dir(tmp.path())
            .output()
            .unwrap();
        let names = String::from_utf8_lossy(&list.stdout);
        assert!(names.contains("bin/busybox"), "{names}");
    }

    for evil in ["../etc/passwd", "/etc/passwd", "a/../../b"] {
        let bytes = write_newc(&[cpio_entry(evil, 0o100644, 1, b"x")]);
        let err = read_newc(&bytes).unwrap_err();
        assert_eq!(err.fault(), Fault::Input, "{evil}");
        assert!(
            err.to_string().starts_with("Refusing archive member "),
            "{err}"
        );
        assert!(checked_member(evil).is_err());
    }
    assert_eq!(checked_member("./a//b/").unwrap(), "a/b");
    // Truncated archive.
    let err = read_newc(&bytes[..60]).unwrap_err();
    assert_eq!(err.fault(), Fault::Input, "{err}");
}

#[test]
fn overlay_members_replace_files_and_traversals_are_refused() {
    let mut merged = vec![
        cpio_entry(".", 0o40755, 1, b""),
        cpio_entry("bin", 0o40755, 2, b""),
        cpio_entry("init", 0o100755, 4, b"old init"),
    ];
    let added = merge_overlay(
        &mut merged,
        &[
            TarMember::new("init", 0o100755, b"new init".to_vec()),
            TarMember::new(
                "lava-1/bin/lava-test-runner",
                0o100755,
                b"#!/bin/sh\n".to_vec(),
            ),
        ],
    )
    .unwrap();
    // lava-1, lava-1/bin and the runner; init is replaced, not added.
    assert_eq!(added, 3);
    assert_eq!(
        merged.iter().find(|e| e.name == "init").unwrap().data,
        b"new init"
    );
    let mut inos: Vec<u32> = merged.iter().map(|e| e.ino).collect();
    inos.sort();
    inos.dedup();
    assert_eq!(inos.len(), merged.len(), "inode numbers stay unique");

    let evil = vec![TarMember::new("../../etc/passwd", 0o100644, b"x".to_vec())];
    assert_eq!(
        merge_overlay(&mut merged, &evil).unwrap_err().fault(),
        Fault::Input
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repack_without_overlay_keeps_every_byte_and_archive_boundary() {
    let tmp = tempfile::tempdir().unwrap();
    // An early-firmware archive, then the main one; the main one ends its members on
    // every alignment (0..3 bytes of padding) and has a member larger than any buffer.
    let early = write_newc(&[
        cpio_entry("kernel", 0o40755, 1, b""),
        cpio_entry("kernel/x86/microcode.bin", 0o100644, 2, &sample(333)),
    ]);
    let main = write_newc(&[
        cpio_entry(".", 0o40755, 1, b""),
        cpio_entry("a", 0o100644, 2, b"1"),
        cpio_entry("bb", 0o100644, 3, b"22"),
        cpio_entry("ccc", 0o100644, 4, b"333"),
        cpio_entry("dddd", 0o100644, 5, b"4444"),
        cpio_entry("big", 0o100755, 6, &sample(300_000)),
        cpio_entry("link", 0o120777, 7, b"big"),
    ]);
    let mut cpio = early.clone();
    cpio.extend(&main);
    for (name, compression) in [
        ("initrd.cpio.gz", Some(Compression::Gz)),
        ("initrd.cpio.xz", Some(Compression::Xz)),
        ("initrd.cpio.zst", Some(Compression::Zstd)),
        ("initrd.cpio.bz2", Some(Compression::Bz2)),
        ("initrd.cpio", None),
    ] {
        let ramdisk = tmp.path().join(name);
        let bytes = match compression {
            Some(c) => compress(c, &cpio),
            None => cpio.clone(),
        };
        std::fs::write(&ramdisk, bytes).unwrap();
        let output = tmp.path().join("out.cpio.gz");
        let done = repack_with_overlay(ramdisk, None, output.clone())
            .await
            .unwrap();
        assert_eq!((done.entries, done.added), (9, 0), "{name}");
        assert_eq!(gunzip(&output), cpio, "{name}: byte-identical");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_repack_merges_the_overlay_into_the_last_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let early = write_newc(&[cpio_entry("early", 0o100644, 1, b"fw")]);
    let main = write_newc(&[
        cpio_entry(".", 0o40755, 1, b""),
        cpio_entry("./bin", 0o40700, 2, b""),
        cpio_entry("./init", 0o100755, 3, b"old init"),
        cpio_entry("./etc", 0o40755, 4, b""),
    ]);
    let mut cpio = early.clone();
    cpio.extend(&main);
    let ramdisk = tmp.path().join("initrd.cpio.gz");
    std::fs::write(&ramdisk, compress(Compression::Gz, &cpio)).unwrap();
    // The overlay: a test runner, a /bin entry and a replacement /init, written as a
    // plain tar and as a gzip tar by the system's tar.
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(tree.join("lava-7/bin")).unwrap();
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::write(tree.join("lava-7/bin/lava-test-runner"), b"#!/bin/sh\n").unwrap();
    std::fs::write(tree.join("init"), b"new init").unwrap();
    let plain = tmp.path().join("overlay.tar");
    let gzipped = tmp.path().join("overlay.tar.gz");
    for (flags, tarball) in [("-cf", &plain), ("-czf", &gzipped)] {
        let tar = std::process::Command::new("tar")
            .args([
                flags,
                tarball.to_str().unwrap(),
                "-C",
                tree.to_str().unwrap(),
            ])
            .args(["lava-7", "bin", "init"])
            .status()
            .unwrap();
        assert!(tar.success());
    }
    let members = read_tar(&std::fs::read(&plain).unwrap()).unwrap();
    let mut expected = read_newc(&cpio).unwrap();
    merge_overlay(&mut expected, &members).unwrap();

    for overlay in [plain, gzipped] {
        let output = tmp.path().join("ramdisk.cpio.gz");
        let done = repack_with_overlay(ramdisk.clone(), Some(overlay.clone()), output.clone())
            .await
            .unwrap();
        let back = gunzip(&output);
        // The early archive is untouched and still ends with its own trailer.
        assert_eq!(&back[..early.len()], &early[..]);
        let merged = read_newc(&back).unwrap();
        let names: Vec<&str> = merged.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "early",
                ".",
                "./bin",
                "./etc",
                "./lava-7",
                "./lava-7/bin",
                "./lava-7/bin/lava-test-runner",
                "./init"
            ],
            "{}: replaced /init moves to the end, /bin keeps the ramdisk's entry",
            overlay.display()
        );
        assert_eq!(merged[2].mode, 0o40700);
        assert_eq!(merged[7].data, b"new init");
        assert_eq!(merged.len(), done.entries);
        assert_eq!(done.added, 3);
        // The in-memory merge has the same names and contents.
        let names_in_memory: Vec<&str> = expected.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names_in_memory, names);
        let mut inos: Vec<u32> = merged[1..].iter().map(|e| e.ino).collect();
        inos.sort();
        inos.dedup();
        assert_eq!(
            inos.len(),
            merged.len() - 1,
            "inode numbers unique in the main archive"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_ramdisk_is_an_input_fault_and_leaves_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cpio = write_newc(&[
        cpio_entry(".", 0o40755, 1, b""),
        cpio_entry("big", 0o100644, 2, &sample(200_000)),
    ]);
    let gz = compress(Compression::Gz, &cpio);
    let evil = write_newc(&[cpio_entry("../escape", 0o100644, 1, b"x")]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated-gzip", gz[..gz.len() / 2].to_vec(), ""),
        ("truncated-cpio", compress(Compression::Gz, &cpio[..100_000]), "Truncated cpio archive"),
        ("not-cpio", compress(Compression::Gz, b"hello, not an archive at all, sorry............................................................................................"), "Not a cpio newc archive"),
        ("traversal", compress(Compression::Gz, &evil), "outside the archive root"),
    ];
    for (name, bytes, message) in cases {
        let ramdisk = tmp.path().join(name);
        std::fs::write(&ramdisk, bytes).unwrap();
        let output = tmp.path().join(format!("{name}.out.gz"));
        let err = repack_with_overlay(ramdisk, None, output.clone())
            .await
            .unwrap_err();
        assert_eq!(err.fault(), Fault::Input, "{name}: {err:?}");
        assert!(err.to_string().contains(message), "{name}: {err}");
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(name) && n != name)
            .collect();
        assert!(left.is_empty(), "{name}: left behind {left:?}");
    }
    // A missing ramdisk is the environment's fault.
    let err = repack_with_overlay(tmp.path().join("none"), None, tmp.path().join("x.gz"))
        .await
        .unwrap_err();
    assert_eq!(err.fault(), Fault::Environment, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_overlays_places_each_overlay_and_recompresses_in_place() {
    use lava_artefacts::ramdisk::{OverlaySource, append_overlays};
    let tmp = tempfile::tempdir().unwrap();
    let cpio = write_newc(&[
        cpio_entry(".", 0o40755, 1, b""),
        cpio_entry("etc", 0o40755, 2, b""),
        cpio_entry("etc/motd", 0o100644, 3, b"old"),
    ]);
    let image = tmp.path().join("rootfs.cpio.xz");
    std::fs::write(&image, compress(Compression::Xz, &cpio)).unwrap();
    // A named tar overlay unpacked at /opt/tools, the LAVA overlay at /, a file at /etc/motd.
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::write(tree.join("bin/tool"), b"tool").unwrap();
    let tools = tmp.path().join("tools.tar");
    let status = std::process::Command::new("tar")
        .args([
            "-cf",
            tools.to_str().unwrap(),
            "-C",
            tree.to_str().unwrap(),
            ".",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let lava_tree = tmp.path().join("lava");
    std::fs::create_dir_all(lava_tree.join("lava-3/bin")).unwrap();
    std::fs::write(
        lava_tree.join("lava-3/bin/lava-test-runner"),
        b"#!/bin/sh\n",
    )
    .unwrap();
    let lava = tmp.path().join("overlay.tar.gz");
    let status = std::process::Command::new("tar")
        .args([
            "-czf",
            lava.to_str().unwrap(),
            "-C",
            lava_tree.to_str().unwrap(),
            "lava-3",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let motd = tmp.path().join("motd");
    std::fs::write(&motd, b"new").unwrap();
    let overlays = vec![
        OverlaySource::Tarball {
            archive: tools,
            at: "/opt/tools".into(),
        },
        OverlaySource::Tarball {
            archive: lava,
            at: "/".into(),
        },
        OverlaySource::File {
            file: motd,
            at: "/etc/motd".into(),
        },
    ];
    let done = append_overlays(
        image.clone(),
        overlays,
        Some(Compression::Xz),
        image.clone(),
    )
    .await
    .unwrap();
    assert_eq!(done.path, image);
    let bytes = std::fs::read(&image).unwrap();
    assert_eq!(
        Compression::from_magic(&bytes),
        Some(Compression::Xz),
        "recompressed as declared"
    );
    let mut plain = Vec::new();
    std::io::Read::read_to_end(
        &mut Compression::Xz.decoder(&bytes[..]).unwrap(),
        &mut plain,
    )
    .unwrap();
    let merged = read_newc(&plain).unwrap();
    let find = |name: &str| merged.iter().find(|e| e.name == name);
    assert_eq!(find("opt/tools/bin/tool").unwrap().data, b"tool");
    assert!(find("opt/tools").unwrap().is_dir());
    assert!(find("opt").unwrap().is_dir(), "missing parents are created");
    assert_eq!(
        find("lava-3/bin/lava-test-runner").unwrap().data,
        b"#!/bin/sh\n"
    );
    let motd = find("etc/motd").unwrap();
    assert_eq!((motd.data.as_slice(), motd.mode), (&b"new"[..], 0o100644));
    assert_eq!(merged.iter().filter(|e| e.name == "etc/motd").count(), 1);
    assert!(!tmp.path().join("rootfs.cpio.partial").exists());

    // Plain output (no compression declared), and an overlay path leaving the root refused.
    let plain_image = tmp.path().join("plain.cpio");
    std::fs::write(&plain_image, &cpio).unwrap();
    let evil = vec![OverlaySource::File {
        file: tmp.path().join("motd"),
        at: "/../x".into(),
    }];
    let err = append_overlays(plain_image.clone(), evil, None, plain_image.clone())
        .await
        .unwrap_err();
    assert_eq!(err.fault(), Fault::Input, "{err}");
    assert_eq!(
        std::fs::read(&plain_image).unwrap(),
        cpio,
        "unchanged after a failure"
    );
}
