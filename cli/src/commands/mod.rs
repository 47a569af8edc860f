//! One module per command family; each writes its answer to stdout (a table or JSON) and
//! returns a [`Failure`] for anything that went wrong.

pub mod audit;
pub mod groups;
pub mod keys;
pub mod rotate;
pub mod sync;
pub mod whoami;

use std::io::Write;

use crate::Failure;

/// Writes `text` to stdout. A closed stdout (`keyward keys list | head`) ends the command quietly.
pub fn emit(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::quiet(0)),
        Err(e) => Err(Failure::new(format!("cannot write the answer: {e}"))),
    }
}

/// A line on stderr (hints next to an answer, which stays alone on stdout).
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}
