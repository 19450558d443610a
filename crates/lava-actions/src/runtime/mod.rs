//! Run-time behaviour shared by the actions: the device console as a pipeline
//! `Connection`, building and applying the test-shell overlay, driving the test shell (and
//! answering its MultiNode markers), image downloads, the overlay added to a ramdisk and
//! QEMU. Actions call into these modules from `run()`. The plain I/O under downloads and
//! ramdisks (fetch, decompress, checksum, cpio) is `lava-artefacts`; its errors become
//! LAVA's with `?` (`From<ArtefactError> for LavaError`: the input's fault is a JobError, the
//! environment's an InfrastructureError).

pub mod boot_commands;
pub mod bootloader;
pub mod console;
pub mod flasher;
pub mod image_download;
pub mod image_overlay;
pub mod interactive;
pub mod iso;
pub mod menu;
pub mod monitor;
pub mod multinode;
pub mod nbd;
pub mod overlay_transfer;
pub mod qemu;
pub mod removable;
pub mod schroot;
pub mod ssh;
pub mod test_overlay;
pub mod test_shell;
pub mod tftp;

/// LAVA's `substitute` without dropping (`drop=False`): in `line`, every placeholder of
/// `table` with a non-empty value is replaced, in the table's order; a placeholder whose
/// value is empty stays as it is. Interactive test commands, QEMU's image and NFS
/// arguments and flasher commands are substituted this way.
pub fn substitute_line(line: &str, table: &[(String, String)]) -> String {
    let mut out = line.to_string();
    for (k, v) in table {
        if !v.is_empty() {
            out = out.replace(k.as_str(), v);
        }
    }
    out
}
