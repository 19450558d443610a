fn main() {
    std::process::exit(lava_dispatch::main_with_args(std::env::args_os()));
}
