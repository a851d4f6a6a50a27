//! Where `console.*` output of every realm goes: the harness realm's and each renderer's
//! pages, frames and workers all end up here, in the browser process, so that lines come out in
//! the order the scripts ran them and one switch (`--quiet`) silences them all.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

/// The `console` method a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Level {
    /// `console.log`.
    Log,
    /// `console.info`.
    Info,
    /// `console.warn`.
    Warn,
    /// `console.error` (and uncaught exceptions the event loop catches).
    Error,
    /// `console.debug`.
    Debug,
}

impl Level {
    /// The `console` method's name.
    pub fn method(self) -> &'static str {
        match self {
            Level::Log => "log",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Debug => "debug",
        }
    }
}

static QUIET: AtomicBool = AtomicBool::new(false);

/// Hides (`true`) or shows console lines from here on.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Prints one console line the way content_shell does: `[origin] text` on stdout, warnings and
/// errors marked and on stderr. `origin` names the realm (a page's origin, or `harness`).
pub fn print(level: Level, origin: &str, text: &str) {
    if QUIET.load(Ordering::Relaxed) {
        return;
    }
    // Renderers are untrusted: their text must not drive the operator's terminal.
    let (origin, text) = (printable(origin), printable(text));
    // A closed stdout or stderr (`| head`) must not kill the browser over a console line.
    let _ = match level {
        Level::Log | Level::Info | Level::Debug => writeln!(std::io::stdout().lock(), "[{origin}] {text}"),
        Level::Warn | Level::Error => writeln!(std::io::stderr().lock(), "[{origin}] {}: {text}", level.method()),
    };
}

/// `text` with control characters other than newline and tab escaped.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return text.into();
    }
    text.chars()
        .map(|c| if c.is_control() && c != '\n' && c != '\t' { c.escape_default().to_string() } else { c.to_string() })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_not_passed_to_the_terminal() {
        assert_eq!(printable("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(printable("\u{1b}[2Jgone"), "\\u{1b}[2Jgone");
    }
}
