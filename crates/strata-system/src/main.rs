//! `strata-system`: qemu-system's command line, without a guest.

use std::process::ExitCode;

use strata_system::args::{devices_help, formats_help, machines_help, parse, Invocation, Probe};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let argv0 = argv.first().map(String::as_str).unwrap_or("strata-system");
    let program = strata_qsd::args::program_name(argv0);
    let plan = match parse(program, &argv[1..]) {
        Ok(Invocation::Probe(probe)) => {
            print!(
                "{}",
                match probe {
                    Probe::Machines => machines_help().to_string(),
                    Probe::Formats => formats_help(),
                    Probe::Devices => devices_help().to_string(),
                }
            );
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Run(plan)) => plan,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    match strata_system::system::start(argv0, &plan) {
        Ok(daemon) => ExitCode::from(daemon.run_loop() as u8),
        Err(line) => {
            eprintln!("{line}");
            ExitCode::FAILURE
        }
    }
}
