//! What a failed command says: one line with what went wrong and, where it helps, what to do —
//! the gRPC code and the server's message, or why the server could not be reached. Never a
//! debug dump, never a secret.

use std::fmt;

use tonic::{Code, Status};

use crate::profile::one_line;

/// A failed command: its one-line message and exit code.
#[derive(Debug)]
pub struct Failure {
    message: String,
    exit: u8,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Failure {
    /// Exit 1 with `message` (on one line).
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: one_line(&message.into()), exit: 1 }
    }

    /// Exit with `exit` and say nothing more (stdout closed early: `keyward keys list | head`;
    /// Ctrl-C while following a sync, after saying so).
    pub fn quiet(exit: u8) -> Self {
        Self { message: String::new(), exit }
    }

    /// What to print on stderr; empty: nothing.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn exit_code(&self) -> u8 {
        self.exit
    }

    /// A gRPC error answered by the server (or by tonic for the call): `CODE: message`, with a
    /// hint for missing or refused credentials.
    pub fn status(status: &Status, ctx: &Ctx) -> Self {
        if let Some(reach) = transport_problem(status) {
            return Self::unreachable(&ctx.addr, &reach, ctx.tls, ctx.identity);
        }
        let mut message = format!("{}: {}", code_name(status.code()), one_line(status.message()));
        if status.code() == Code::Unauthenticated {
            match &ctx.token_source {
                None => message.push_str(
                    " (no API token was sent: pass --token-file FILE, set KEYWARD_TOKEN, or give the profile \
                     a token_file; the demo's admin token is data/demo/admin.token)",
                ),
                Some(source) => message.push_str(&format!(" (the token from {source} was refused)")),
            }
        }
        Self::new(message)
    }

    /// The server could not be reached at `addr`: `why`, and a hint for the usual causes
    /// (`tls`: whether TLS was asked for, `identity`: whether a client certificate was set).
    pub fn unreachable(addr: &str, why: &str, tls: bool, identity: bool) -> Self {
        let hint = if why.contains("connection refused") {
            " (is it running? `scripts/demo` starts one)"
        } else if why.contains("timed out") {
            " (is the address right, and the port open?)"
        } else if !tls {
            " (does the server speak TLS? then use an https:// address and a ca_file)"
        } else if why.contains("certificate") && !why.contains("CertificateRequired") {
            " (check ca_file and server_name)"
        } else if !identity {
            " (does the server require a client certificate? then set cert_file and key_file)"
        } else {
            ""
        };
        Self::new(format!("cannot reach the Keyward server at {addr}: {why}{hint}"))
    }
}

/// What messages name: the server's address, where the token came from, how TLS was set.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub addr: String,
    pub token_source: Option<String>,
    /// TLS asked for, and a client certificate with it.
    pub tls: bool,
    pub identity: bool,
}

/// The text of the deepest cause of a transport failure: `connection refused`, `timed out`,
/// a TLS alert or certificate problem; `None` when the failure came from the server.
pub fn transport_problem(status: &Status) -> Option<String> {
    use std::error::Error as _;
    let source = status.source()?;
    // A failure to connect: the status wraps a transport error.
    Some(deepest_cause(source))
}

/// The innermost cause of `err` in words a person reads (an io error by its kind).
pub fn deepest_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    let mut io_kind = None;
    while let Some(next) = cur.source() {
        if let Some(io) = cur.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        cur = next;
    }
    if let Some(io) = cur.downcast_ref::<std::io::Error>() {
        io_kind = Some(io.kind());
    }
    let last = cur.to_string();
    match io_kind {
        Some(std::io::ErrorKind::ConnectionRefused) => "connection refused".to_owned(),
        Some(std::io::ErrorKind::TimedOut) => "timed out".to_owned(),
        Some(std::io::ErrorKind::ConnectionReset) => "connection reset by the server".to_owned(),
        _ => one_line(&last),
    }
}

pub use keyward_proto::code_name;
