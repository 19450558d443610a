//! `lava-coordinator`: the MultiNode message broker daemon (see the library
//! `lava_coordinator_cli` for its command line).

fn main() {
    std::process::exit(lava_coordinator_cli::main_with_args(std::env::args_os()));
}
