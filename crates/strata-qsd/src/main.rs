//! `strata-qsd`: the command line of qemu-storage-daemon.

use std::process::ExitCode;

use strata_qsd::args::{parse, program_name, usage, version, Invocation};
use strata_qsd::daemon::Daemon;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let argv0 = argv.first().map(String::as_str).unwrap_or("strata-qsd");
    let plan = match parse(argv0, &argv[1..]) {
        Ok(Invocation::Help) => {
            print!("{}", usage(program_name(argv0)));
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Version) => {
            print!("{}", version());
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Run(plan)) => plan,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    match Daemon::start(argv0, plan) {
        Ok(daemon) => ExitCode::from(daemon.run_loop() as u8),
        Err(err) => {
            eprintln!("{}", err.0);
            ExitCode::FAILURE
        }
    }
}
