//! The AWS KMS emulator for tests and the demo: LocalStack's KMS in host mode (no Docker),
//! installed by `scripts/emulator-env` into `.venv-kms`, started once per process on a free
//! loopback port and stopped when the process exits (a watchdog shell kills it).
//! `KEYWARD_TEST_KMS_ENDPOINT` points at an already running one instead.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running emulator.
pub struct Emulator {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

static SHARED: OnceLock<Emulator> = OnceLock::new();

impl Emulator {
    /// The process-wide emulator, started on first use (15–30 s).
    pub fn shared() -> &'static Emulator {
        SHARED.get_or_init(|| match std::env::var("KEYWARD_TEST_KMS_ENDPOINT") {
            Ok(url) if !url.is_empty() => Emulator { url },
            _ => Emulator::start().unwrap_or_else(|e| panic!("cannot start the KMS emulator: {e}")),
        })
    }

    /// Installs (if needed) and starts the emulator; waits until its KMS answers. A start that
    /// does not become ready in 60 s (LocalStack occasionally dies at start on a loaded
    /// machine) is killed and tried again, three times in all.
    pub fn start() -> Result<Emulator, String> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = Command::new(root.join("scripts/emulator-env"))
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("scripts/emulator-env: {e}"))?;
        if !out.status.success() {
            return Err("scripts/emulator-env failed".into());
        }
        let python = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let mut last = String::new();
        for _ in 0..3 {
            match Self::start_once(&python) {
                Ok(e) => return Ok(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn start_once(python: &str) -> Result<Emulator, String> {
        let port = free_port()?;
        let state = tempfile::Builder::new().prefix("keyward-kms-").tempdir().map_err(|e| e.to_string())?.keep();
        let log = state.join("emulator.log");
        let pid_file = state.join("emulator.pid");
        let parent = std::process::id();
        // The watchdog ends the emulator's whole process group once this process is gone.
        let script = format!(
            "setsid \"$PY\" -m localstack.runtime.main >\"$LOG\" 2>&1 & child=$!; echo $child > \"$PIDFILE\"; \
             while kill -0 {parent} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 1; done; \
             kill -TERM -- -$child 2>/dev/null; sleep 3; kill -KILL -- -$child 2>/dev/null"
        );
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .env("PY", python)
            .env("LOG", &log)
            .env("PIDFILE", &pid_file)
            .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("SERVICES", "kms")
            .env("DNS_ADDRESS", "0")
            .env("LOCALSTACK_TELEMETRY", "0")
            .env("DISABLE_EVENTS", "1")
            .env("SKIP_SSL_CERT_DOWNLOAD", "1")
            .env("FILESYSTEM_ROOT", state.join("fs"))
            .env("TMPDIR", &state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn emulator: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if health(port).is_some_and(|b| b.contains("\"kms\"")) {
                return Ok(Emulator { url: format!("http://127.0.0.1:{port}") });
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            let _ = Command::new("kill").arg("-KILL").arg("--").arg(format!("-{}", pid.trim())).status();
        }
        Err(format!("emulator did not become ready in 60 s; see {}", log.display()))
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn health(port: u16) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /_localstack/health HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let ok = body.starts_with("HTTP/1.1 200") || body.starts_with("HTTP/1.0 200");
    ok.then_some(body)
}
