//! `lava-worker`: the LAVA worker daemon (see the library `lava_worker_cli` for its command
//! line).

fn main() {
    std::process::exit(lava_worker_cli::main_with_args(std::env::args_os()));
}
