fn main() {
    std::process::exit(trun::cli::main());
}
