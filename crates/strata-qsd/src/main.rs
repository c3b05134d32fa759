fn main() {
    eprintln!("strata-qsd: not yet");
    std::process::exit(1);
}
