//! Run-time behaviour shared by the actions: the device console as a pipeline
//! `Connection`, building and applying the test-shell overlay, driving the test shell (and
//! answering its MultiNode markers), image downloads, the overlay added to a ramdisk and
//! QEMU. Actions call into these modules from `run()`. The plain I/O under downloads and
//! ramdisks (fetch, decompress, checksum, cpio) is `lava-artefacts`; its errors become
//! LAVA's through [`artefact_error`].

pub mod console;
pub mod image_download;
pub mod multinode;
pub mod qemu;
pub mod ramdisk_overlay;
pub mod ssh;
pub mod test_overlay;
pub mod test_shell;

use lava_artefacts::{ArtefactError, Fault};
use lava_pipeline::{ErrorKind, LavaError};

/// An artefact error as LAVA's: the input's fault (a URL, a checksum, a declared
/// compression, an archive) is a JobError, the environment's (network, server, disk) an
/// InfrastructureError, and a broken internal rule a Bug; the message is kept.
pub fn artefact_error(error: ArtefactError) -> LavaError {
    let kind = match error.fault() {
        Fault::Input => ErrorKind::Job,
        Fault::Environment => ErrorKind::Infrastructure,
        Fault::Bug => ErrorKind::Bug,
    };
    LavaError::new(kind, error.to_string())
}
