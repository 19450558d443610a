//! `lava-run`: runs one LAVA job on one device (command line in the library `lava_dispatch`).

fn main() {
    // Before any thread: every process the job starts carries this run's token, so the
    // next job on the device can end them if this dispatcher is killed.
    lava_dispatcher::device_claim::mark_process();
    lava_dispatch::tune_process_allocator();
    std::process::exit(lava_dispatch::main_with_args(std::env::args_os()));
}
