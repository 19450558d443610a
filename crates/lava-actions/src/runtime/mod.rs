//! Run-time behaviour shared by the actions: the device console as a pipeline
//! `Connection`, building and applying the test-shell overlay, driving the test shell (and
//! answering its MultiNode markers), downloads, ramdisk surgery and QEMU. Actions call into
//! these modules from `run()`.

pub mod console;
pub mod download;
pub mod multinode;
pub mod newc;
pub mod overlay;
pub mod qemu;
pub mod ramdisk;
pub mod ssh;
pub mod test_shell;
