//! The `shipway` binary: parses argv, runs one command, and decides the exit code.
//!
//! Newcomers: `cli` defines every command and flag once; `commands` runs them against the API
//! through `client`; `output` prints objects the way kubectl users expect.

#[macro_use]
mod out;
mod app;
mod cli;
mod client;
mod commands;
mod env;
mod image;
mod output;
mod pipeline;
mod promote;
mod render;
mod rollout;
mod run;
mod secret;

use std::process::ExitCode;

/// A failure and the exit code it maps to (DESIGN §8: 1 the operation failed, 2 usage or validation).
#[derive(Debug)]
pub enum Failure {
    /// The operation ran and failed (a server error, an object not found, a failed write).
    Failed(String),
    /// The request was wrong: bad flags, invalid manifests.
    Usage(String),
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Failure::Failed(_) => 1,
            Failure::Usage(_) => 2,
        }
    }
}

impl From<client::ClientError> for Failure {
    fn from(e: client::ClientError) -> Failure {
        match &e {
            client::ClientError::Api(s) if s.code == 400 || s.code == 422 || s.code == 413 => {
                Failure::Usage(e.to_string())
            }
            _ => Failure::Failed(e.to_string()),
        }
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse_args();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let (Failure::Failed(message) | Failure::Usage(message)) = &failure;
            let message = message.trim_end();
            if message.starts_with("Error from server") || message.starts_with("error:") {
                eprintln!("{message}");
            } else {
                eprintln!("error: {message}");
            }
            ExitCode::from(failure.code())
        }
    }
}
