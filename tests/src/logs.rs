//! Captures every log line of the test process at TRACE level in memory, so tests can prove
//! that no secret ever reaches a log. `KEYWARD_TEST_LOG=1` also copies them to stderr.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

static BUFFER: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

fn buffer() -> &'static Mutex<Vec<u8>> {
    BUFFER.get_or_init(|| Mutex::new(Vec::new()))
}

struct Capture;

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if std::env::var_os("KEYWARD_TEST_LOG").is_some() {
            let _ = std::io::stderr().write_all(b);
        }
        if let Ok(mut v) = buffer().lock() {
            v.extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (TRACE for everything) once per process.
pub fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // TRACE for everything, with the same caps the binaries apply to the AWS SDK.
        let filter = tracing_subscriber::EnvFilter::new(keyward_shared::startup::log_directives("trace"));
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(|| Capture).with_ansi(false).try_init();
    });
}

/// Everything logged so far.
pub fn captured() -> String {
    buffer().lock().map(|v| String::from_utf8_lossy(&v).into_owned()).unwrap_or_default()
}
