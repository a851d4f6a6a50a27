//! `tracing` output of every process of the shell. Each process (browser, renderers, the
//! sandboxed storage service) installs its own subscriber writing to the stderr it inherited
//! from the browser, so one terminal shows them all; each line names its process, because
//! otherwise an eviction in the service and a kill in the browser read alike.
//!
//! The storage service's sandbox keeps this working: stderr is open before lock-down and its
//! seccomp policy allows `write`/`writev`; the filter is read from `RUST_LOG` (which the
//! launcher forwards to children) before lock-down too.

use std::io::Write;
use std::sync::Arc;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// What is logged when `RUST_LOG` is unset: only problems, so normal output stays as it is.
pub const DEFAULT_FILTER: &str = "warn";

/// Installs this process's subscriber (`RUST_LOG` filtering, [`DEFAULT_FILTER`] otherwise);
/// every line starts with `process: `. Does nothing if one is installed already.
pub fn init(process: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(Tagged(Arc::from(process))).try_init();
}

/// Makes one [`TaggedEvent`] per event.
#[derive(Clone)]
struct Tagged(Arc<str>);

impl<'a> MakeWriter<'a> for Tagged {
    type Writer = TaggedEvent;

    fn make_writer(&'a self) -> TaggedEvent {
        TaggedEvent { process: self.0.clone(), text: Vec::new() }
    }
}

/// Collects one formatted event and writes it, tagged, in a single `write` when dropped:
/// lines of several processes sharing the terminal then never interleave mid-line.
struct TaggedEvent {
    process: Arc<str>,
    text: Vec<u8>,
}

impl Write for TaggedEvent {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for TaggedEvent {
    fn drop(&mut self) {
        let mut out = Vec::with_capacity(self.text.len() + 32);
        for line in self.text.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
            out.extend_from_slice(format!("{}: ", self.process).as_bytes());
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        // Nowhere to report a failed log write.
        let _ = std::io::stderr().lock().write_all(&out);
    }
}
