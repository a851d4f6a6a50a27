//! `test_shell`: the Cross-Origin Storage component's content_shell: runs JavaScript test files
//! and the demo against the real COS stack (see the crate's README).

use test_shell::{demo, js, page};

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// The Cross-Origin Storage test shell.
#[derive(Parser)]
#[command(name = "test_shell", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The seed's scenario for real: a loopback hub serves a Whisper-tiny-sized model set
    /// (177 MiB), a 23 MiB Wasm runtime and a sentiment model; page A loads them the way
    /// Transformers.js does with Cross-Origin Storage, then page B on another site does the same.
    /// Prints, per origin, bytes from the network, bytes from COS and the time to ready.
    Demo {
        /// The browser profile directory (default: a new temporary one).
        #[arg(long)]
        profile: Option<PathBuf>,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Runs a JavaScript test file (testharness API) and prints one line per test, then
    /// `N passed, N failed`. Exits 0 only if at least one test ran and none failed.
    Run {
        /// The test script.
        script: PathBuf,
        /// Give up if the tests have not completed after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Also print what the script logs with `console.*`.
        #[arg(long)]
        verbose: bool,
    },
    /// Opens one page at ORIGIN and runs a web-platform-tests style file in it (`// META:
    /// script=` includes are loaded first, relative to the file). Same output and exit code as
    /// `run`.
    Wpt {
        /// The `.any.js` test file.
        test: PathBuf,
        /// The page's URL (its origin decides what the page may see).
        #[arg(long, default_value = "https://web-platform.test/")]
        origin: String,
        /// The browser profile directory (default: a new temporary one).
        #[arg(long)]
        profile: Option<PathBuf>,
        /// Give up if the tests have not completed after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
}

fn main() -> ExitCode {
    // The same binary is every process of the shell: browser (no --type), renderer, service.
    match cos_ipc::launch::bootstrap_from_args() {
        Ok(Some(bootstrap)) => {
            return match bootstrap.process_type.as_str() {
                "renderer" => test_shell::renderer::run_renderer_process(bootstrap),
                "storage-service" => cos_storage_service::process::run_storage_service_process(bootstrap),
                other => {
                    eprintln!("test_shell: unknown process type {other}");
                    ExitCode::FAILURE
                }
            };
        }
        Ok(None) => {}
        Err(error) => {
            eprintln!("test_shell: {error}");
            return ExitCode::FAILURE;
        }
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { profile, json } => match demo::run(&program(), profile.as_deref(), json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("test_shell demo: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Run { script, timeout, verbose } => run(&script, Duration::from_secs(timeout), verbose),
        Command::Wpt { test, origin, profile, timeout } => {
            wpt(&test, &origin, profile.as_deref(), Duration::from_secs(timeout))
        }
    }
}

fn wpt(test: &std::path::Path, origin: &str, profile: Option<&std::path::Path>, timeout: Duration) -> ExitCode {
    let outcome = (|| -> Result<Vec<js::TestResult>, page::PageError> {
        let browser = page::Browser::start(&program(), profile)?;
        let page = browser.open(origin)?;
        page.run_test_file(test, timeout)
    })();
    finish(outcome.map_err(|e| e.to_string()))
}

/// This binary, which the browser process launches as renderers and the storage service.
fn program() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"))
}

fn finish(outcome: Result<Vec<js::TestResult>, String>) -> ExitCode {
    match outcome {
        Ok(results) => {
            let mut stdout = std::io::stdout().lock();
            match js::report(&results, &mut stdout) {
                Ok(true) => ExitCode::SUCCESS,
                _ => ExitCode::FAILURE,
            }
        }
        Err(error) => {
            eprintln!("test_shell: {error}");
            println!("0 passed, 1 failed");
            ExitCode::FAILURE
        }
    }
}

fn run(script: &std::path::Path, timeout: Duration, verbose: bool) -> ExitCode {
    let source = match std::fs::read_to_string(script) {
        Ok(source) => source,
        Err(error) => {
            eprintln!("test_shell: cannot read {}: {error}", script.display());
            return ExitCode::from(2);
        }
    };
    let outcome = (|| -> Result<Vec<js::TestResult>, js::JsError> {
        let host = js::JsHost::new(verbose)?;
        let realm = host.realm()?;
        host.eval(&realm, "testharness.js", js::TESTHARNESS_JS)?;
        host.eval(&realm, &script.display().to_string(), &source)?;
        host.run_tests(timeout)
    })();
    finish(outcome.map_err(|e| e.to_string()))
}
