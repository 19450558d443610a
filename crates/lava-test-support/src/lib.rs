//! What lava-rs's tests share, in one place instead of `#[path]` includes and copies:
//! the CI rule ([`ci`]: in CI a missing tool is a failure, never a skip), workspace paths
//! ([`paths`]), owned child processes ([`process`]: a dispatcher in its own process group,
//! stopped with TERM then KILL), a private OpenSSH server ([`sshd`]), LAVA's own
//! coordinator daemon ([`coordinator`]), a real lab with Debian's lava-server ([`lab`],
//! also `cargo xtask lab`), the harness that runs a run-time function as one pipeline
//! action ([`runtime`]), and the artefact tests' sample data, compressions and cpio
//! entries ([`artefacts`]).
//!
//! Dev-only: a dev-dependency of the crates whose tests use it (and a dependency of
//! xtask); never published.
//!
//! ```no_run
//! use lava_test_support::{ci, sshd::Sshd};
//! if !ci::require_tool("/usr/bin/ssh", "apt-get install -y openssh-client") {
//!     return; // skipped (printed why); under CI=true this panicked instead
//! }
//! let Some(server) = Sshd::start() else { return };
//! println!("ssh -p {} {}@{}", server.port(), server.user(), server.host());
//! ```
#![warn(missing_docs)]

pub mod artefacts;
pub mod ci;
pub mod coordinator;
pub mod lab;
pub mod paths;
pub mod process;
pub mod runtime;
pub mod sshd;

use std::sync::atomic::{AtomicU32, Ordering};

/// A job id distinct for every call in every test process (`<pid><n>`, numeric like
/// LAVA's), so scratch and results directories of tests running at once never meet.
pub fn unique_job_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}
