//! The command-line parse every binary shares, included by each bin crate as a module
//! (`#[path = "../../cli.rs"] mod cli;`): one copy of how a clap error ends a run.

use std::ffi::OsString;

/// Parse `args` into `C`, or print clap's message and return the process exit code: 2 for
/// a bad command line (the message on standard error), 0 for `--help` and `--version` (on
/// standard output).
pub fn parse<C: clap::Parser>(args: impl IntoIterator<Item = OsString>) -> Result<C, i32> {
    C::try_parse_from(args).map_err(|err| {
        let code = if err.use_stderr() { 2 } else { 0 };
        let _ = err.print();
        code
    })
}
