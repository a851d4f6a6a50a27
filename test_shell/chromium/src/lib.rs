//! Hosts `navigator.crossOriginStorage` in real headless Chromium.
//!
//! Chromium plays the renderer; the trusted side (broker stubs, the sandboxed storage service)
//! is ours. [`devtools`] launches Chromium and speaks the DevTools protocol over a pipe;
//! [`bridge`] turns Chromium's targets and execution contexts into COS renderers and frames and
//! answers the injected script's binding calls; [`data_server`] carries the bytes on capability
//! URLs; [`wpt`] runs the conformance files in Chromium pages and workers; [`clients`] runs the
//! real client libraries, unmodified, at their real names.

pub mod bridge;
pub mod clients;
pub mod data_server;
pub mod devtools;
pub mod wpt;

pub use bridge::{Bridge, BridgeConfig, BridgeError, Tab};
pub use wpt::{WptError, WptVariant, run_wpt};

/// The `main` prologue of an executable that serves as the bridge's storage service: when the
/// process was started as `--type=storage-service`, runs the service and returns its exit code;
/// otherwise returns `None` and `main` carries on.
pub fn run_child_process() -> Option<std::process::ExitCode> {
    match cos_ipc::launch::bootstrap_from_args() {
        Ok(Some(bootstrap)) if bootstrap.process_type == "storage-service" => {
            Some(cos_storage_service::process::run_storage_service_process(bootstrap))
        }
        Ok(Some(bootstrap)) => {
            eprintln!("unknown process type {}", bootstrap.process_type);
            Some(std::process::ExitCode::FAILURE)
        }
        Ok(None) => None,
        Err(error) => {
            eprintln!("{error}");
            Some(std::process::ExitCode::FAILURE)
        }
    }
}
