//! The real server in its own process over a test's database and AWS account, for crash tests:
//! started from the `keyward-test-server` binary, killed with SIGKILL.

use std::net::SocketAddr;
use std::process::Stdio;

use keyward_proto::v1 as pb;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::TestApp;

/// A running `keyward-test-server` process.
pub struct ServerProcess {
    child: tokio::process::Child,
    pub addr: SocketAddr,
    /// Where its `/metrics` are served, when started by [`ServerProcess::start_metered`].
    pub metrics_addr: Option<SocketAddr>,
}

impl ServerProcess {
    /// Starts `exe` (pass `env!("CARGO_BIN_EXE_keyward-test-server")`) over `app`'s database,
    /// with the AWS operation `hang` (`op` or `op:key`) never answering.
    pub async fn start(exe: &str, app: &TestApp, hang: Option<&str>) -> Self {
        Self::spawn(exe, app, hang, false).await
    }

    /// Starts `exe` as a bare tonic server answering health checks only (the transport ceiling).
    pub async fn start_echo(exe: &str) -> Self {
        let mut cmd = tokio::process::Command::new(exe);
        cmd.env("KEYWARD_TEST_ECHO", "1").stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true);
        let mut child = cmd.spawn().expect("start keyward-test-server");
        let stdout = child.stdout.take().expect("stdout");
        let line = BufReader::new(stdout).lines().next_line().await.expect("read").expect("a line");
        let addr = line.strip_prefix("listening ").expect("listening").parse().expect("address");
        Self { child, addr, metrics_addr: None }
    }

    /// The process id (for its CPU time and memory in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Starts `exe` over `app`'s database with Prometheus metrics and the estate pass running.
    pub async fn start_metered(exe: &str, app: &TestApp) -> Self {
        Self::spawn(exe, app, None, true).await
    }

    async fn spawn(exe: &str, app: &TestApp, hang: Option<&str>, metered: bool) -> Self {
        let mut cmd = tokio::process::Command::new(exe);
        cmd.env("KEYWARD_DATABASE_URL", &app.db_url)
            .env("KEYWARD_MASTER_KEY", app.master_key_hex())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some(h) = hang {
            cmd.env("KEYWARD_TEST_HANG", h);
        }
        if metered {
            cmd.env("KEYWARD_TEST_METRICS", "1");
        }
        let mut child = cmd.spawn().expect("start keyward-test-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut metrics_addr = None;
        let addr = loop {
            match lines.next_line().await.expect("read the server's stdout") {
                Some(line) => {
                    if let Some(a) = line.strip_prefix("metrics ") {
                        metrics_addr = Some(a.parse().expect("metrics address"));
                    }
                    if let Some(a) = line.strip_prefix("listening ") {
                        break a.parse().expect("address");
                    }
                }
                None => panic!("keyward-test-server ended before listening"),
            }
        };
        Self { child, addr, metrics_addr }
    }

    /// A KeyService client of this process, as `app`'s bootstrap admin.
    pub fn keys(&self, app: &TestApp) -> pb::key_service_client::KeyServiceClient<crate::Conn> {
        pb::key_service_client::KeyServiceClient::new(crate::conn(self.addr, &app.admin_token))
    }

    /// A GroupService client of this process, as `app`'s bootstrap admin.
    pub fn groups(&self, app: &TestApp) -> pb::group_service_client::GroupServiceClient<crate::Conn> {
        pb::group_service_client::GroupServiceClient::new(crate::conn(self.addr, &app.admin_token))
    }

    /// SIGKILL, and waits until the process is gone.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill -9");
    }
}
