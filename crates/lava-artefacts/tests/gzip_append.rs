//! The gzip splice of `append-overlays` (lava_artefacts::gzip_append): for every image it
//! accepts, the new file decompresses to the full path's bytes with the same counts; every
//! other image takes the full path, with the full path's errors.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use lava_artefacts::Compression;
use lava_artefacts::newc::{CpioEntry, write_newc};
use lava_artefacts::ramdisk::{
    OverlaySource, Repacked, append_overlays_blocking, append_overlays_recompressed_blocking,
};
use lava_test_support::artefacts::{cpio_entry, gunzip, sample};
use lava_test_support::ci::{require_tool, skip_or_fail};

/// gzip of `data` at `level` (0: stored blocks) by flate2.
fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A tree like the LAVA test overlay (`lava-<job>/bin/...`, a test definition) as a gzip
/// tarball written by the system's tar, unpacked at the image root.
fn lava_overlay(dir: &Path) -> OverlaySource {
    let tree = dir.join("overlay-tree");
    let bin = tree.join("lava-4242/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(tree.join("lava-4242/0/tests/0_smoke")).unwrap();
    for (name, size) in [
        ("lava-test-runner", 3000),
        ("lava-test-case", 2500),
        ("lava-test-shell", 1200),
    ] {
        std::fs::write(bin.join(name), sample(size)).unwrap();
    }
    std::fs::write(
        tree.join("lava-4242/0/tests/0_smoke/run.sh"),
        b"#!/bin/sh\nlava-test-case always-pass --shell true\n",
    )
    .unwrap();
    let archive = dir.join("overlay.tar.gz");
    let status = std::process::Command::new("tar")
        .args(["-czf", archive.to_str().unwrap(), "-C"])
        .arg(&tree)
        .arg("lava-4242")
        .status()
        .unwrap();
    assert!(status.success());
    OverlaySource::Tarball {
        archive,
        at: "/".into(),
    }
}

/// A file overlay at `at` with `data`.
fn file_overlay(dir: &Path, at: &str, data: &[u8]) -> OverlaySource {
    let file = dir.join(format!("file-{}", at.replace('/', "_")));
    std::fs::write(&file, data).unwrap();
    OverlaySource::File {
        file,
        at: at.into(),
    }
}

/// Both ways of appending `overlays` to the gzip `image`: the splice's result after
/// checking that its file decompresses (by `gzip -dc`) to the full path's bytes with the
/// same counts, and those bytes.
fn compare(
    dir: &Path,
    name: &str,
    image: &[u8],
    overlays: &[OverlaySource],
) -> (Repacked, Vec<u8>) {
    let input = dir.join(format!("{name}.cpio.gz"));
    std::fs::write(&input, image).unwrap();
    let fast_out = dir.join(format!("{name}.fast.gz"));
    let full_out = dir.join(format!("{name}.full.gz"));
    let fast = append_overlays_blocking(&input, overlays, Some(Compression::Gz), &fast_out)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let full =
        append_overlays_recompressed_blocking(&input, overlays, Some(Compression::Gz), &full_out)
            .unwrap();
    assert!(!full.spliced, "{name}");
    assert_eq!(
        (fast.entries, fast.added),
        (full.entries, full.added),
        "{name}: counts"
    );
    let (fast_plain, full_plain) = (gunzip(&fast_out), gunzip(&full_out));
    assert!(
        fast_plain == full_plain,
        "{name}: the splice's bytes differ from the full path's ({} against {} bytes, first \
         difference at {:?})",
        fast_plain.len(),
        full_plain.len(),
        fast_plain.iter().zip(&full_plain).position(|(a, b)| a != b)
    );
    assert_eq!(
        std::fs::read(&input).unwrap(),
        image,
        "{name}: input untouched"
    );
    (fast, fast_plain)
}

/// A main archive of several members, big enough for many deflate blocks.
fn several_members(prefix: &str) -> Vec<CpioEntry> {
    let mut entries = vec![cpio_entry(&format!("{prefix}."), 0o40755, 1, b"")];
    for (i, dir) in ["bin", "etc", "lib"].iter().enumerate() {
        entries.push(cpio_entry(
            &format!("{prefix}{dir}"),
            0o40755,
            2 + i as u32,
            b"",
        ));
    }
    for i in 0..40u32 {
        let size = 1 + (i as usize * 7919) % 60_000;
        entries.push(cpio_entry(
            &format!("{prefix}lib/file-{i}"),
            0o100644,
            10 + i,
            &sample(size)[..],
        ));
    }
    entries.push(cpio_entry(
        &format!("{prefix}init"),
        0o100755,
        99,
        b"#!/bin/sh\n",
    ));
    entries
}

#[test]
fn the_splice_writes_the_full_paths_bytes_for_every_encoding_it_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let overlays = vec![
        lava_overlay(dir),
        file_overlay(dir, "/etc/lava-extra/config", b"key=value\n"),
    ];
    let cpio = write_newc(&several_members(""));
    for level in [0, 1, 6, 9] {
        let (done, plain) = compare(
            dir,
            &format!("level{level}"),
            &gzip(&cpio, level),
            &overlays,
        );
        assert!(done.spliced, "level {level}");
        assert!(
            plain.starts_with(&cpio[..cpio.len() - 512]),
            "level {level}"
        );
        // No overlay: the new archive is the image's, to its last byte; the splice point
        // is the end of the data, never the end of the image's final block.
        let (done, plain) = compare(dir, &format!("none{level}"), &gzip(&cpio, level), &[]);
        assert!(done.spliced && plain == cpio, "level {level}");
    }
    // GNU gzip's own stream (the usual encoder of real ramdisks), FNAME set.
    if require_tool("gzip", "apt install gzip") {
        let plain = dir.join("by-gzip.cpio");
        std::fs::write(&plain, &cpio).unwrap();
        let status = std::process::Command::new("gzip")
            .args(["-9", "-k", "-f"])
            .arg(&plain)
            .status()
            .unwrap();
        assert!(status.success());
        let image = std::fs::read(dir.join("by-gzip.cpio.gz")).unwrap();
        assert_ne!(image[3] & 8, 0, "gzip wrote FNAME");
        assert!(compare(dir, "gnu-gzip", &image, &overlays).0.spliced);
    }
    // GNU cpio's archive (initramfs-tools' and most ramdisk builders' tool) is written as
    // this crate writes it: spliced too.
    if require_tool("cpio", "apt install cpio") && require_tool("gzip", "apt install gzip") {
        let tree = dir.join("gnu-tree");
        std::fs::create_dir_all(tree.join("bin")).unwrap();
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("bin/busybox"), sample(400_000)).unwrap();
        std::fs::write(tree.join("etc/issue"), b"image\n").unwrap();
        std::os::unix::fs::symlink("busybox", tree.join("bin/sh")).unwrap();
        let image = dir.join("gnu-cpio.cpio.gz");
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg("cd \"$1\" && find . | sort | cpio -o -H newc --quiet | gzip -6 > \"$2\"")
            .arg("sh")
            .arg(&tree)
            .arg(&image)
            .status()
            .unwrap();
        assert!(status.success());
        let image = std::fs::read(&image).unwrap();
        assert!(compare(dir, "gnu-cpio", &image, &overlays).0.spliced);
    }
}

#[test]
fn a_trailer_in_the_first_block_several_archives_and_dot_names_are_spliced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let overlays = vec![lava_overlay(dir)];
    // A tiny archive: one deflate block, the splice point is the start of the stream.
    let tiny = write_newc(&[
        cpio_entry(".", 0o40755, 1, b""),
        cpio_entry("init", 0o100755, 2, b"#!/bin/sh\n"),
    ]);
    let (done, _) = compare(dir, "tiny", &gzip(&tiny, 6), &overlays);
    assert!(done.spliced);
    // An early-firmware archive, then the main one with `./` names: the overlay lands in
    // the main archive, named `./lava-4242/...`.
    let mut two = write_newc(&[
        cpio_entry("kernel", 0o40755, 1, b""),
        cpio_entry("kernel/x86/microcode.bin", 0o100644, 2, &sample(70_000)),
    ]);
    two.extend(write_newc(&several_members("./")));
    let (done, plain) = compare(dir, "two-archives", &gzip(&two, 6), &overlays);
    assert!(done.spliced);
    let names: Vec<String> = lava_artefacts::newc::read_newc(&plain)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(names.contains(&"./lava-4242/bin/lava-test-runner".to_string()));
    assert!(names.contains(&"kernel/x86/microcode.bin".to_string()));
    // Nothing added (every overlay directory already there): the output is the image's
    // archive; the last block is compressed again all the same.
    let last_replaced = vec![file_overlay(dir, "/init", b"#!/bin/sh\n")];
    let single = write_newc(&several_members(""));
    let (done, plain) = compare(dir, "replace-last", &gzip(&single, 6), &last_replaced);
    assert!(
        done.spliced,
        "the last member replaced: the archive differs only after the whole image was read"
    );
    assert_eq!(done.added, 0);
    assert_eq!(plain.len(), single.len());
}

#[test]
fn random_archives_levels_and_overlays_are_spliced_to_the_full_paths_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A fixed pseudo-random sequence: member counts and sizes, gzip levels and overlay
    // sizes vary, so the splice point falls at every kind of place in a block.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for case in 0..24 {
        let members = 1 + next(30) as u32;
        let mut entries = vec![cpio_entry(".", 0o40755, 1, b"")];
        for i in 0..members {
            let size = match next(4) {
                0 => next(4) as usize,
                1 => next(600) as usize,
                _ => next(120_000) as usize,
            };
            let data = sample(size + i as usize);
            entries.push(cpio_entry(&format!("m{i}"), 0o100644, 2 + i, &data));
        }
        let level = next(10) as u32;
        let overlay_size = next(50_000) as usize;
        let overlays = vec![file_overlay(
            dir,
            &format!("/lava-{case}/bin/runner"),
            &sample(overlay_size),
        )];
        let name = format!("random{case}-level{level}");
        let (done, _) = compare(dir, &name, &gzip(&write_newc(&entries), level), &overlays);
        assert!(done.spliced, "{name}");
        assert_eq!(done.added, 3, "{name}");
    }
}

#[test]
fn a_splice_point_in_a_large_block_is_spliced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let overlays = vec![lava_overlay(dir)];
    let mut varied = vec![cpio_entry(".", 0o40755, 1, b"")];
    for i in 0..8 {
        varied.push(cpio_entry(
            &format!("v{i}"),
            0o100644,
            2 + i,
            &sample(40_000),
        ));
    }
    // 3 MiB of zeros deflate into one block of some 12 000 matches: early in the image it
    // is copied whole; at its end it holds the splice point, and its bytes up to there
    // (not kept while reading) are inflated again from the image.
    let zeros = vec![0u8; 3 << 20];
    let mut early = vec![cpio_entry("zeros", 0o100644, 99, &zeros)];
    early.extend(varied.clone());
    for level in [1, 9] {
        let name = format!("large-block-early{level}");
        let (done, _) = compare(dir, &name, &gzip(&write_newc(&early), level), &overlays);
        assert!(done.spliced, "{name}");
        let mut late = varied.clone();
        late.push(cpio_entry("zeros", 0o100644, 99, &zeros));
        let name = format!("large-block-late{level}");
        let (done, _) = compare(dir, &name, &gzip(&write_newc(&late), level), &overlays);
        assert!(done.spliced, "{name}");
    }
    // Several MiB of text that compresses well (runs of repeated lines), then a small
    // member before the trailer: the blocks holding the splice point are large, the point
    // itself anywhere in them.
    let text: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("line {:06} of a log\n", i / 7).into_bytes())
        .collect();
    let mut logs = varied.clone();
    logs.push(cpio_entry("var/log/boot", 0o100644, 100, &text));
    logs.push(cpio_entry("etc/issue", 0o100644, 101, b"image\n"));
    for level in [1, 6, 9] {
        let name = format!("large-text{level}");
        let (done, _) = compare(dir, &name, &gzip(&write_newc(&logs), level), &overlays);
        assert!(done.spliced, "{name}");
    }
}

#[test]
fn a_splice_point_in_the_first_block_after_the_header_is_spliced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let overlays = vec![lava_overlay(dir)];
    // Zeros and a few small members deflate into one block at level 9: the splice point's
    // boundary is the end of the gzip header, the block is inflated again from its first
    // byte with no history, several MiB of it.
    let entries = vec![
        cpio_entry(".", 0o40755, 1, b""),
        cpio_entry("zeros", 0o100644, 2, &vec![0u8; 3 << 20]),
        cpio_entry("init", 0o100755, 3, b"#!/bin/sh\n"),
    ];
    let image = gzip(&write_newc(&entries), 9);
    let (done, plain) = compare(dir, "first-block", &image, &overlays);
    assert!(done.spliced);
    assert!(plain.len() > 3 << 20);
    // Nothing added: the splice point is the end of the data, in the same block.
    let (done, plain) = compare(dir, "first-block-none", &image, &[]);
    assert!(done.spliced);
    assert_eq!(plain, write_newc(&entries));
}

/// A gzip member with FEXTRA, FNAME, FCOMMENT and FHCRC around `data`'s deflate stream.
fn gzip_with_header_fields(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 2 | 4 | 8 | 16, 1, 2, 3, 4, 0, 3];
    out.extend([6, 0, b'L', b'R', 2, 0, 0xaa, 0xbb]);
    out.extend(b"initramfs.cpio\0");
    out.extend(b"a comment\0");
    let mut header_crc = flate2::Crc::new();
    header_crc.update(&out);
    out.extend((header_crc.sum() as u16).to_le_bytes());
    let mut deflate =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    deflate.write_all(data).unwrap();
    out.extend(deflate.finish().unwrap());
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend(crc.sum().to_le_bytes());
    out.extend((data.len() as u32).to_le_bytes());
    out
}

#[test]
fn gzip_header_fields_are_skipped_and_the_output_passes_gzip_and_cpio() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let overlays = vec![lava_overlay(dir)];
    let cpio = write_newc(&several_members(""));
    let image = gzip_with_header_fields(&cpio);
    let (done, _) = compare(dir, "header-fields", &image, &overlays);
    assert!(done.spliced);
    // The spliced file as Debian's tools see it.
    if !require_tool("gzip", "apt install gzip") || !require_tool("cpio", "apt install cpio") {
        return;
    }
    let spliced = dir.join("header-fields.fast.gz");
    let test = std::process::Command::new("gzip")
        .arg("-t")
        .arg(&spliced)
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "{}",
        String::from_utf8_lossy(&test.stderr)
    );
    let list = std::process::Command::new("sh")
        .arg("-c")
        .arg("gzip -dc \"$1\" | cpio -t 2>/dev/null")
        .arg("sh")
        .arg(&spliced)
        .output()
        .unwrap();
    assert!(list.status.success());
    let names = String::from_utf8(list.stdout).unwrap();
    let names: Vec<&str> = names.lines().collect();
    assert_eq!(names.len(), done.entries, "{names:?}");
    assert!(names.contains(&"lib/file-39"), "{names:?}");
    assert!(
        names.contains(&"lava-4242/bin/lava-test-runner"),
        "{names:?}"
    );
}

#[test]
fn other_images_take_the_full_path() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let overlays = vec![lava_overlay(dir), file_overlay(dir, "/lib/file-3", b"new")];
    let cpio = write_newc(&several_members(""));
    // A member replaced before the end.
    let (done, _) = compare(dir, "replaced", &gzip(&cpio, 6), &overlays);
    assert!(!done.spliced);
    let added_only = vec![lava_overlay(dir)];
    // Two gzip members: the archive split across them, and a whole archive in each.
    let mut split = gzip(&cpio[..cpio.len() / 2], 6);
    split.extend(gzip(&cpio[cpio.len() / 2..], 6));
    assert!(!compare(dir, "split", &split, &added_only).0.spliced);
    let mut two = gzip(&write_newc(&[cpio_entry("early", 0o100644, 1, b"fw")]), 6);
    two.extend(gzip(&cpio, 6));
    assert!(!compare(dir, "two-members", &two, &added_only).0.spliced);
    // Headers written in lower-case hexadecimal: the full path writes them upper-case,
    // so the archive differs from the first member on.
    let lower: Vec<u8> = {
        let mut bytes = write_newc(&several_members(""));
        let mut offset = 0;
        while offset + 110 <= bytes.len() && &bytes[offset..offset + 6] == b"070701" {
            bytes[offset..offset + 110].make_ascii_lowercase();
            let field = |i: usize| {
                let text = std::str::from_utf8(&bytes[offset + 6 + i * 8..offset + 14 + i * 8]);
                usize::from_str_radix(text.unwrap(), 16).unwrap()
            };
            let (size, name) = (field(6), field(11));
            offset = (offset + 110 + name).div_ceil(4) * 4;
            offset = (offset + size).div_ceil(4) * 4;
        }
        bytes
    };
    assert_ne!(lower, cpio);
    assert!(
        !compare(dir, "lower-case", &gzip(&lower, 6), &added_only)
            .0
            .spliced
    );
    // Not gzip at all.
    let input = dir.join("plain.cpio");
    std::fs::write(&input, &cpio).unwrap();
    let output = dir.join("plain.out.gz");
    let done =
        append_overlays_blocking(&input, &added_only, Some(Compression::Gz), &output).unwrap();
    assert!(!done.spliced);
}

#[test]
fn a_corrupt_image_fails_as_on_the_full_path_and_leaves_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let overlays = vec![lava_overlay(dir)];
    let image = gzip(&write_newc(&several_members("")), 6);
    let n = image.len();
    let mut bad_crc = image.clone();
    bad_crc[n - 8] ^= 1;
    let mut bad_size = image.clone();
    bad_size[n - 2] ^= 1;
    let mut bad_data = image.clone();
    bad_data[n / 2] ^= 0x55;
    for (name, bytes) in [
        ("truncated", image[..n * 2 / 3].to_vec()),
        ("no-trailer", image[..n - 8].to_vec()),
        ("bad-crc", bad_crc),
        ("bad-size", bad_size),
        ("bad-data", bad_data),
    ] {
        let input = dir.join(format!("{name}.cpio.gz"));
        std::fs::write(&input, &bytes).unwrap();
        let fast_out = dir.join(format!("{name}.fast.gz"));
        let full_out = dir.join(format!("{name}.full.gz"));
        let fast = append_overlays_blocking(&input, &overlays, Some(Compression::Gz), &fast_out)
            .expect_err(name);
        let full = append_overlays_recompressed_blocking(
            &input,
            &overlays,
            Some(Compression::Gz),
            &full_out,
        )
        .expect_err(name);
        assert_eq!(fast.to_string(), full.to_string(), "{name}");
        assert_eq!(fast.fault(), full.fault(), "{name}");
        assert_eq!(fast.fault(), lava_artefacts::Fault::Input, "{name}: {fast}");
        let left: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(&format!("{name}."))
            })
            .filter(|p| *p != input)
            .collect();
        assert!(left.is_empty(), "{name}: left behind {left:?}");
    }
}

/// The test system's initramfs (`cargo xtask test-system`), or `None` after saying why.
fn test_system_initramfs() -> Option<PathBuf> {
    let path = lava_test_support::paths::test_system().join("initramfs.cpio.gz");
    if path.exists() {
        Some(path)
    } else {
        skip_or_fail(format!(
            "{} is missing (cargo xtask test-system builds it)",
            path.display()
        ));
        None
    }
}

#[test]
fn the_test_system_initramfs_is_spliced_to_the_full_paths_bytes() {
    let Some(initramfs) = test_system_initramfs() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let overlays = vec![lava_overlay(tmp.path())];
    let image = std::fs::read(&initramfs).unwrap();
    let (done, _) = compare(tmp.path(), "initramfs", &image, &overlays);
    assert!(done.spliced);
    assert!(done.added >= 5, "{done:?}");
    // The image's deflate stream is copied up to its last blocks (both gzip headers are
    // 10 bytes long): only a small tail was compressed again.
    let spliced = std::fs::read(tmp.path().join("initramfs.fast.gz")).unwrap();
    let shared = spliced[10..]
        .iter()
        .zip(&image[10..])
        .take_while(|(a, b)| a == b)
        .count();
    eprintln!(
        "{} of the image's {} compressed bytes copied, {} bytes written",
        shared,
        image.len(),
        spliced.len()
    );
    assert!(
        shared + 10 + 64 * 1024 > image.len(),
        "only {shared} of {} bytes copied",
        image.len()
    );
}

/// Times both ways on the test system's initramfs with a test overlay (the
/// `overlays: lava: true` job's deploy). Run in release:
/// `cargo test --release -p lava-artefacts --test gzip_append -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn time_the_splice_against_the_full_path() {
    let Some(initramfs) = test_system_initramfs() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let overlays = vec![lava_overlay(tmp.path())];
    let image = tmp.path().join("initramfs.cpio.gz");
    std::fs::copy(&initramfs, &image).unwrap();
    let output = tmp.path().join("out.cpio.gz");
    const RUNS: usize = 15;
    let mut report = Vec::new();
    for (name, spliced) in [
        ("full path", false),
        ("splice", true),
        ("full path", false),
        ("splice", true),
    ] {
        let mut times = Vec::new();
        for _ in 0..RUNS {
            let started = Instant::now();
            let done = if spliced {
                append_overlays_blocking(&image, &overlays, Some(Compression::Gz), &output)
            } else {
                append_overlays_recompressed_blocking(
                    &image,
                    &overlays,
                    Some(Compression::Gz),
                    &output,
                )
            }
            .unwrap();
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(done.spliced, spliced);
        }
        times.sort_by(f64::total_cmp);
        let size = std::fs::metadata(&output).unwrap().len();
        report.push(format!(
            "{name}: median {:.1} ms, min {:.1} ms, max {:.1} ms over {RUNS} runs; {size} bytes",
            times[RUNS / 2],
            times[0],
            times[RUNS - 1]
        ));
    }
    for line in report {
        eprintln!("{line}");
    }
}
