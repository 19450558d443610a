//! The artefacts of a job as plain I/O, with no pipeline types: fetching an image
//! ([`mod@download`]: `http(s)://` and `file://`, one streaming pass that hashes, decompresses
//! and writes), the compression formats LAVA jobs declare ([`compression`]: gz, xz, zstd,
//! bz2, by name or by magic), checksums ([`checksum`]: md5, sha256, sha512), the cpio
//! `newc` format of initramfs images ([`newc`]), tar members ([`tar`]) and the ramdisk
//! repacked with a test overlay merged in, or a cpio image with a job's `overlays:`
//! appended and recompressed ([`ramdisk`]; a single-member gzip image is spliced instead,
//! only the appended tail compressed: [`gzip_append`]), the same for a tar image
//! ([`tar_image`]);
//! [`compression::Encoder`] writes every format.
//!
//! Every failure is an [`ArtefactError`] whose [`Fault`] says whose fault it is (the
//! submitted input, the environment, or a bug): callers map that onto their own error
//! kinds. Heavy work (hashing, decompression, compression) runs on tokio's blocking pool,
//! never on the async workers.
//!
//! ```
//! use lava_artefacts::newc::{CpioEntry, S_IFREG, read_newc, write_newc};
//!
//! let archive = write_newc(&[CpioEntry::new("init".into(), S_IFREG | 0o755, b"#!/bin/sh\n".to_vec())]);
//! let members = read_newc(&archive)?;
//! assert_eq!(members[0].name, "init");
//! assert_eq!(lava_artefacts::Compression::from_magic(&archive), None);
//! # Ok::<(), lava_artefacts::ArtefactError>(())
//! ```

#![warn(missing_docs)]

pub mod checksum;
pub mod compression;
pub mod download;
mod error;
pub mod gzip_append;
pub mod newc;
pub mod ramdisk;
pub mod tar;
pub mod tar_image;

pub use checksum::{Algorithm, Checksums, Digests};
pub use compression::Compression;
pub use download::{DownloadEvent, DownloadRequest, Downloaded, download};
pub use error::{ArtefactError, Fault};
