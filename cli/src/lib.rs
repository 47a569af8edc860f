//! keyward-cli: the `keyward` command-line client of Keyward's gRPC API, for people — groups,
//! keys, syncs with a progress bar, the audit log — with profiles, TLS and API-key credentials.
//! It depends on the API (keyward-proto) only, never on the server's crates.

pub mod args;
pub mod client;
pub mod commands;
pub mod error;
pub mod output;
pub mod profile;
pub mod resolve;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

pub use error::Failure;

use args::{Cli, Command, Shell};

/// Runs the command line of this process: the answer on stdout, a one-line `error: …` on
/// stderr and exit 1 when it fails, exit 2 for a usage error (clap's).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&Failure::new(format!("cannot start the async runtime: {e}"))),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => fail(&f),
    }
}

fn fail(f: &Failure) -> ExitCode {
    if !f.message().is_empty() {
        commands::note(&format!("error: {}", f.message()));
    }
    ExitCode::from(f.exit_code())
}

/// One command.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Completions { shell } = &cli.command {
        let mut out = Vec::new();
        let shell = match shell {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        };
        clap_complete::generate(shell, &mut Cli::command(), "keyward", &mut out);
        return commands::emit(&String::from_utf8_lossy(&out));
    }
    let settings = profile::resolve(&cli.global, &|k| std::env::var(k).ok())?;
    let client = client::Client::connect(&settings).await?;
    let output = cli.global.output;
    match &cli.command {
        Command::Groups(cmd) => commands::groups::run(&client, cmd, output).await,
        Command::Keys(cmd) => commands::keys::run(&client, cmd, output).await,
        Command::Sync(args) => commands::sync::run(&client, args, output).await,
        Command::Rotate(args) => commands::rotate::run(&client, args, output).await,
        Command::Audit(cmd) => commands::audit::run(&client, cmd, output).await,
        Command::Whoami => commands::whoami::run(&client, output).await,
        Command::Completions { .. } => Ok(()),
    }
}
