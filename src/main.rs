use std::process::ExitCode;

use clap::Parser;

use ebpfsentinel::cli::{Cli, Outcome};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.execute() {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Negative) => ExitCode::from(1),
        Err(err) => {
            if err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("ebpfsentinel: {err:#}");
            ExitCode::from(2)
        }
    }
}
