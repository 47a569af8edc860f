//! The command line: global connection options (each overriding the selected profile) and the
//! commands, with clap's derive API. Usage errors exit 2 (clap's default).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Where the server's address comes from when neither a flag, `KEYWARD_ADDR` nor a profile says.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:50051";

#[derive(Debug, Parser)]
#[command(
    name = "keyward",
    version,
    about = "The command-line client of Keyward, a key manager in front of AWS KMS.",
    long_about = "The command-line client of Keyward, a key manager in front of AWS KMS.\n\n\
        Connection settings come from a profile of the config file ($KEYWARD_CLI_CONFIG, else \
        ~/.config/keyward/config.toml), overridden by environment variables, overridden by \
        flags. The API token is read from --token-file, else $KEYWARD_TOKEN, else the profile's \
        token_file; it is never printed.",
    after_help = "Examples:\n  \
        keyward --token-file data/demo/admin.token groups list\n  \
        KEYWARD_TOKEN=$(cat data/demo/admin.token) keyward keys list --filter 'key_spec = RSA_2048'\n  \
        keyward --profile prod sync payments-prod"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
#[command(next_help_heading = "Connection and output (every command)")]
pub struct Global {
    /// Profile of the config file to use [default: the file's `default_profile`, else `default`].
    #[arg(long, global = true, env = "KEYWARD_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
    /// The config file with the profiles [default: ~/.config/keyward/config.toml].
    #[arg(long, global = true, env = "KEYWARD_CLI_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The server, e.g. http://127.0.0.1:50051 or https://keyward.example:50051 [default: the
    /// profile's `addr`, else http://127.0.0.1:50051].
    #[arg(long, global = true, env = "KEYWARD_ADDR", value_name = "URL")]
    pub addr: Option<String>,
    /// File holding the API token (`kw_…`), sent as `authorization: Bearer`. Without it:
    /// $KEYWARD_TOKEN, else the profile's `token_file`.
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM CA certificate(s) the server's certificate must chain to (TLS). Without it an
    /// https:// server is checked against the public web PKI roots.
    #[arg(long, global = true, env = "KEYWARD_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain for mutual TLS (with --key-file).
    #[arg(long, global = true, env = "KEYWARD_CERT_FILE", value_name = "FILE")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(long, global = true, env = "KEYWARD_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must carry, when it is not the address's host.
    #[arg(long, global = true, env = "KEYWARD_SERVER_NAME", value_name = "NAME")]
    pub server_name: Option<String>,
    /// Seconds a call waits for the server's answer (a server that takes the connection and
    /// never answers).
    #[arg(long, global = true, default_value_t = 30, value_name = "SECONDS")]
    pub timeout: u64,
    /// Output format: aligned columns for people, or JSON (the API's field names).
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Groups: an AWS account and region (AWS_KMS), or keys held by Keyward (REGULAR).
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// Keys of one group or of every group.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Syncs an AWS_KMS group with AWS and follows the run to its end with a progress bar.
    /// Exits 1 when the run FAILED.
    Sync(SyncArgs),
    /// Rotates a key (RotateKey); `--plan` shows what it would do and changes nothing.
    Rotate(RotateArgs),
    /// The audit log: who did what to which resource, with what outcome.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Who the credentials belong to: principal, account roles, groups.
    Whoami,
    /// Prints a shell completion script, e.g. `keyward completions bash > /etc/bash_completion.d/keyward`.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// Lists the groups the caller may read.
    List {
        /// `kind = AWS_KMS` or `kind = REGULAR`.
        #[arg(long)]
        filter: Option<String>,
    },
    /// Shows one group.
    Get {
        /// `groups/ID`, a bare group id, or the group's display name.
        group: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Lists keys, following every page (or stopping at --limit).
    List {
        /// Only this group's keys (`groups/ID`, id or display name) [default: every group].
        #[arg(long, short)]
        group: Option<String>,
        /// `field = VALUE` terms joined by AND over state, virtual, key_spec, source, origin,
        /// display_name (a prefix: "prod-*"), alias, tags.<tag key>, aws_key_id, key_arn and
        /// update_time (also <, <=, >, >=), e.g. 'state = ENABLED AND tags.team = "payments"'.
        #[arg(long)]
        filter: Option<String>,
        /// display_name, create_time or update_time, optionally followed by "desc".
        #[arg(long)]
        order_by: Option<String>,
        /// At most this many keys (0: all).
        #[arg(long, default_value_t = 0)]
        limit: usize,
    },
    /// Shows one key.
    Get {
        /// `groups/G/keys/K`; or, with --group, a bare key id, a display name or an alias
        /// (`alias/…`).
        key: String,
        /// The key's group (`groups/ID`, id or display name).
        #[arg(long, short)]
        group: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The AWS_KMS group: `groups/ID`, a bare group id, or its display name.
    pub group: String,
    /// No progress bar (it is drawn only on a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// `groups/G/keys/K`; or a key id, display name, alias, AWS key id or ARN (with --group,
    /// within that group).
    pub key: String,
    /// The key's group (`groups/ID`, id or display name).
    #[arg(long, short)]
    pub group: Option<String>,
    /// The plan only: the AWS calls, the new key, the alias moves; nothing is changed.
    #[arg(long)]
    pub plan: bool,
    /// AWS's own rotation (RotateKeyOnDemand): the same key, new material.
    #[arg(long)]
    pub in_place: bool,
    /// A Keyward key's linked copies follow it.
    #[arg(long)]
    pub rotate_linked: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Lists audit events in chain order (oldest first).
    List {
        /// AND of `resource = "groups/G"`, `resource = "groups/G/*"` (under it),
        /// `create_time >= "RFC3339"`, `create_time < "RFC3339"`.
        #[arg(long)]
        filter: Option<String>,
        /// At most this many events (0: all).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}
