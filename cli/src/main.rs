//! `keyward`: the command-line client of Keyward (see `keyward --help`).

fn main() -> std::process::ExitCode {
    keyward_cli::main()
}
