//! `test_shell_bench` (also run as `test_shell bench`): the bench's command line. The same binary
//! is every process of a run: the browser (no `--type`), renderers, the storage service (also the
//! one behind `navigator.crossOriginStorage` in Chromium with `--peers`) and the transport peer.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use cos_shell_bench::{BenchOptions, Parts, TRANSPORT_PROCESS_TYPE};

/// Measures every hot path against this machine's limits, in one run: baselines (SHA-256,
/// write + fsync, page-cache read, memcpy, the raw transport), COS from JavaScript in a renderer
/// frame (store, read, lookups), scale (concurrent renderers, dedup, start-up on a
/// 100,000-entry registry, a 500,000-digest Public Hash List, a 4 GiB store), the ratios with
/// their targets, and with --peers the browser's own storage in headless Chromium. Progress goes
/// to stderr, the table (or JSON) to stdout. Takes a few minutes (--quick: under one).
#[derive(Parser)]
#[command(name = "test_shell bench", version, about, long_about = None)]
struct Cli {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Small sizes and few samples: a smoke test in under a minute (no targets apply).
    #[arg(long)]
    quick: bool,
    /// Also measure Cache API, OPFS and IndexedDB in headless Chromium (`/usr/bin/chromium` or
    /// `$CHROMIUM`), and COS through that Chromium beside them; skipped, saying so, when there is
    /// none.
    #[arg(long)]
    peers: bool,
    /// Where to put the profiles and files measured (default: a new temporary directory); its
    /// filesystem is the one measured.
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Run only these parts (comma-separated: baselines, cos, scale), e.g. to profile one.
    #[arg(long, value_parser = Parts::parse)]
    only: Option<Parts>,
}

fn main() -> ExitCode {
    // Every child role first, before any argument parsing. `storage-service` is what
    // `cos_shell_chromium::run_child_process` runs too, so this also serves the Chromium bridge of
    // --peers; that function is not called here because it refuses the other roles.
    match cos_ipc::launch::bootstrap_from_args() {
        Ok(Some(bootstrap)) => {
            return match bootstrap.process_type.as_str() {
                "renderer" => test_shell::renderer::run_renderer_process(bootstrap),
                "storage-service" => cos_storage_service::process::run_storage_service_process(bootstrap),
                TRANSPORT_PROCESS_TYPE => cos_shell_bench::run_transport_peer(bootstrap),
                other => {
                    eprintln!("test_shell bench: unknown process type {other}");
                    ExitCode::FAILURE
                }
            };
        }
        Ok(None) => {}
        Err(error) => {
            eprintln!("test_shell bench: {error}");
            return ExitCode::FAILURE;
        }
    }
    let cli = Cli::parse();
    let options = BenchOptions { quick: cli.quick, peers: cli.peers, profile: cli.profile, only: cli.only };
    // This binary, which the run launches as renderers, the storage service and the transport peer.
    let program = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let started = std::time::Instant::now();
    let mut progress = |line: &str| eprintln!("[{:>6.1} s] {line}", started.elapsed().as_secs_f64());
    match cos_shell_bench::run(&program, &options, &mut progress) {
        Ok(report) => {
            if cli.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_table());
            }
            eprintln!("bench finished in {:.1} s", started.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("test_shell bench: {error}");
            ExitCode::FAILURE
        }
    }
}
