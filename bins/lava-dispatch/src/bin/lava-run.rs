//! `lava-run`: runs one LAVA job on one device (command line in the library `lava_dispatch`).

fn main() {
    lava_dispatch::tune_process_allocator();
    std::process::exit(lava_dispatch::main_with_args(std::env::args_os()));
}
