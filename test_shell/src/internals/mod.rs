//! The internals page (`test_shell internals`): a person's view of a profile's Cross-Origin
//! Storage, like a browser's `chrome://…-internals` pages. The browser process starts a
//! [`CosHost`] on the profile, so every view and action goes through the sandboxed storage
//! service like any other browser action, and serves three views on loopback:
//!
//! * **By resource**: every entry (hash, size, storing origins, grant, Public Hash List, reads,
//!   times, provenance), sortable and filterable, with a usage chart and a delete button;
//! * **By origin**: each origin's charge against the per-origin limit, with "Clear site data";
//! * **Service**: generation, sandbox, Public Hash List, probe budgets, limits, eviction and
//!   corruption counts, and "Scrub now" with its progress.
//!
//! The protections are [`InternalsServer`]'s. [`Snapshot::to_json`] is the same data for tools
//! (`--dump`).

mod html;
mod server;
mod snapshot;
mod views;

use std::path::Path;
use std::sync::Arc;

use cos_browser::{CosHost, HostConfig, ServiceLaunch};
use cos_common::interface::ServiceProcessConfig;
use cos_ipc::launch::LaunchOptions;

pub use html::{Html, escape};
pub use server::InternalsServer;
pub use snapshot::{Grant, Snapshot};

/// The file name of the Public Hash List a profile may keep (`test_shell demo --profile` leaves
/// its list there); the internals page uses it unless told otherwise.
pub const PROFILE_PUBLIC_HASH_LIST: &str = "public-hash-list.txt";

/// Starts the browser's COS host, with its sandboxed storage-service process (`program
/// --type=storage-service`), on `profile`, with `public_hash_list` (a file in the Public Hash
/// List format) as the browser's list, if any.
pub fn start_host(program: &Path, profile: &Path, public_hash_list: Option<&Path>) -> Result<CosHost, String> {
    std::fs::create_dir_all(profile).map_err(|e| format!("{}: {e}", profile.display()))?;
    let mut launch = LaunchOptions::new("storage-service");
    launch.program = program.to_path_buf();
    let mut service = ServiceProcessConfig::new(profile.to_string_lossy());
    service.public_hash_list_path = public_hash_list.map(|path| path.to_string_lossy().into_owned());
    CosHost::start(HostConfig { launch: ServiceLaunch::Process(launch), service }).map_err(|e| e.to_string())
}

/// `test_shell internals`: serves the page for `profile` on `port` until the process is stopped,
/// or (`dump`) prints the three views as JSON and returns.
pub fn run(
    program: &Path,
    profile: &Path,
    public_hash_list: Option<&Path>,
    port: u16,
    dump: bool,
) -> Result<(), String> {
    let in_profile = profile.join(PROFILE_PUBLIC_HASH_LIST);
    let public_hash_list = public_hash_list.or_else(|| in_profile.is_file().then_some(in_profile.as_path()));
    let host = Arc::new(start_host(program, profile, public_hash_list)?);
    if dump {
        let snapshot =
            Snapshot::read(&host).map_err(|e| format!("the storage service did not answer: {}", e.name()))?;
        let json = serde_json::to_string_pretty(&snapshot.to_json()).map_err(|e| e.to_string())?;
        use std::io::Write;
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        let _ = writeln!(std::io::stdout().lock(), "{json}");
        return Ok(());
    }
    let server = InternalsServer::start(host, port).map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    println!("Cross-Origin Storage internals for {}:", profile.display());
    println!("    {}", server.url());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}
