//! `test_shell`: the Cross-Origin Storage component's content_shell: runs JavaScript test files
//! and the demo against the real COS stack (see the crate's README).

use test_shell::{demo, js, logging, page};

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// The Cross-Origin Storage test shell.
#[derive(Parser)]
#[command(name = "test_shell", version, about, long_about = None)]
struct Cli {
    /// Do not print console output (`console.log` and friends) of the scenario, its pages,
    /// frames and workers.
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Shows what Cross-Origin Storage saves across sites: a loopback hub serves a
    /// Whisper-tiny-sized model set (177 MiB), a 23 MiB Wasm runtime and a sentiment model; a page
    /// on one site downloads them the way Transformers.js does and keeps them in Cross-Origin
    /// Storage, then a page on a second site gets the same files from there without downloading
    /// them. Prints, per origin, bytes from the network, bytes from COS and the time to ready.
    Demo {
        /// The browser profile directory (default: a new temporary one).
        #[arg(long)]
        profile: Option<PathBuf>,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Load the files that have no Git LFS pointer (the Wasm runtime, tokenizer and config
        /// files) with `fetch(url, {integrity, crossOriginStorage: '*'})` (the first site's page
        /// activated first), so the second site downloads nothing but the pointers.
        #[arg(long)]
        fetch_integration: bool,
    },
    /// Runs a scenario in the harness realm: our testharness plus the `shell` object, which opens
    /// pages (each site in its own renderer process), adds iframes, runs code in frames and
    /// inspects or disturbs the browser. `// META: script=` includes (relative to the file) load
    /// first; `// META: service.<key>=<value>` lines configure the storage service. Prints one
    /// line per test, then `N passed, N failed`; exits 0 only if at least one test ran and none
    /// failed.
    Run {
        /// The scenario script.
        script: PathBuf,
        /// The browser profile directory (default: a new temporary one).
        #[arg(long)]
        profile: Option<PathBuf>,
        /// A Public Hash List file for the storage service.
        #[arg(long)]
        phl: Option<PathBuf>,
        /// Give up if the tests have not completed after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// One renderer process per site (site isolation); `false` puts every page in one.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        process_per_site: bool,
        /// The largest `frame.eval` argument list or result (and any other message between the
        /// browser and a renderer), in bytes; a larger one fails the call with an error.
        #[arg(long, default_value_t = test_shell::channel::DEFAULT_MESSAGE_LIMIT)]
        message_limit: usize,
        /// How renderer processes reach their broker stubs: `cos-ipc` pipes, or `ipc-channel`
        /// links as an embedder such as Servo has.
        #[arg(long, default_value = "cos-ipc", value_parser = ["cos-ipc", "ipc-channel"])]
        renderer_transport: String,
    },
    /// Opens one page at ORIGIN and runs a web-platform-tests style file in it (`// META:
    /// script=` includes are loaded first, relative to the file). Same output and exit code as
    /// `run`.
    ///
    /// An `.html` test file is a testharness.js page instead: its directory is served at
    /// ORIGIN, `/resources/testharness.js` is the shell's harness, and the page loads as a
    /// document (its scripts, modules, iframes and links).
    Wpt {
        /// The `.any.js` or `.html` test file.
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
    /// Measures every hot path against this machine's limits and, with --peers, the browser's
    /// own storage in headless Chromium (`--quick`: a smoke test under a minute; `--json`;
    /// `--only PARTS`; `--help` lists all). The bench is its own binary, `test_shell_bench`
    /// (`cargo build --release -p cos_shell_bench`), which this runs from beside this binary
    /// with the same arguments.
    #[command(disable_help_flag = true)]
    Bench {
        /// The bench's arguments, passed on as they are.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Runs the COS API in real headless Chromium (`$CHROMIUM` or `/usr/bin/chromium`), this
    /// shell's storage service behind it.
    Chromium {
        #[command(subcommand)]
        command: ChromiumCommand,
    },
    /// Serves the internals page of a profile's Cross-Origin Storage on 127.0.0.1: every entry
    /// (by resource), every origin's usage (by origin) and the storage service's state, with
    /// delete, clear-site-data and scrub buttons, updating live. Prints the address to open, which
    /// carries a random token; nothing else on the machine can use the page without it.
    Internals {
        /// The browser profile directory (default: a new temporary one).
        #[arg(long)]
        profile: Option<PathBuf>,
        /// The browser's Public Hash List, a file in the list's format (default: the profile's
        /// `public-hash-list.txt` if there is one, as `test_shell demo --profile` leaves it;
        /// else none, and no entry is shown as on the list).
        #[arg(long, value_name = "FILE")]
        public_hash_list: Option<PathBuf>,
        /// The port to listen on (default: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Print the three views as JSON and exit instead of serving the page.
        #[arg(long)]
        dump: bool,
    },
    /// Re-hashes every blob of a profile's Cross-Origin Storage (through the sandboxed storage
    /// service, as the browser's maintenance would) and deletes entries whose blob is damaged or
    /// missing. Prints progress to stderr, then what it found; exits 1 if anything was damaged.
    Scrub {
        /// The browser profile directory to check.
        #[arg(long)]
        profile: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The `chromium` subcommands.
#[derive(Subcommand)]
enum ChromiumCommand {
    /// Fetches the pinned client packages (Transformers.js, onnxruntime-web, WebLLM, wllama) from
    /// the npm registry with `npm pack`, once, into $COS_CLIENTS_DIR (default target/cos-clients),
    /// checks them and prints where they are.
    Setup,
    /// Runs the real client libraries, unmodified, in Chromium: each client (Transformers.js 4.3.2
    /// and 4.2.0, WebLLM 0.2.86, wllama 3.13.0) with a fresh Cross-Origin Storage, at one site and
    /// then at a second. Prints per client and site the bytes from the network (model files,
    /// pointers, other), the bytes from COS, the time to ready and the inference; exits 1 unless
    /// the second sites got the shared model files from COS and inference agrees.
    Clients {
        /// Print the report as JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Runs a web-platform-tests `.any.js` file in Chromium, as a window page and in a dedicated
    /// worker (as its `// META: global=` allows), at ORIGIN (an `http://` or `https://` name
    /// that Chromium resolves to a loopback hub). Same output and exit code as `wpt`.
    ///
    /// An `.html` test file is a testharness.js page instead: its directory is served at
    /// ORIGIN, `/resources/testharness.js` is the shell's harness, and the page loads as a
    /// document (its scripts, modules, iframes and links).
    Wpt {
        /// The `.any.js` or `.html` test file.
        test: PathBuf,
        /// The page's URL (its origin decides what the page may see).
        #[arg(long, default_value = cos_shell_chromium::wpt::DEFAULT_ORIGIN)]
        origin: String,
        /// A web-platform-tests checkout: `/resources/testharness.js` and absolute `// META:
        /// script=` paths come from there (default: this shell's own harness).
        #[arg(long)]
        wpt_root: Option<PathBuf>,
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
                "renderer" => {
                    let name = bootstrap
                        .args
                        .iter()
                        .find_map(|arg| arg.strip_prefix(page::RENDERER_NAME_ARG))
                        .unwrap_or("unnamed");
                    logging::init(&format!("renderer[{name}]"));
                    test_shell::renderer::run_renderer_process(bootstrap)
                }
                "storage-service" => {
                    // Before the service locks itself down: see `logging`.
                    logging::init("storage-service");
                    cos_storage_service::process::run_storage_service_process(bootstrap)
                }
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
    logging::init("browser");
    let cli = Cli::parse();
    test_shell::console::set_quiet(cli.quiet);
    match cli.command {
        Command::Demo { profile, json, fetch_integration } => {
            let mode = if fetch_integration { demo::Mode::FetchIntegration } else { demo::Mode::Api };
            match demo::run_mode(&program(), profile.as_deref(), json, mode) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("test_shell demo: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { script, profile, phl, timeout, process_per_site, message_limit, renderer_transport } => {
            let config = test_shell::ScenarioConfig {
                program: program(),
                profile,
                public_hash_list: phl,
                process_per_site,
                message_limit,
                renderer_transport: match renderer_transport.as_str() {
                    "ipc-channel" => test_shell::page::RendererTransport::IpcChannel,
                    _ => test_shell::page::RendererTransport::CosIpc,
                },
            };
            finish(test_shell::run_scenario(config, &script, Duration::from_secs(timeout)).map_err(|e| e.to_string()))
        }
        Command::Wpt { test, origin, profile, timeout } => {
            wpt(&test, &origin, profile.as_deref(), Duration::from_secs(timeout))
        }
        Command::Scrub { profile, json } => scrub(&profile, json),
        Command::Internals { profile, public_hash_list, port, dump } => {
            internals(profile, public_hash_list, port, dump)
        }
        Command::Bench { args } => bench(args),
        Command::Chromium { command } => chromium(command),
    }
}

fn chromium(command: ChromiumCommand) -> ExitCode {
    use cos_shell_chromium::clients;
    match command {
        ChromiumCommand::Wpt { test, origin, wpt_root, timeout } => {
            chromium_wpt(test, origin, wpt_root, Duration::from_secs(timeout))
        }
        ChromiumCommand::Setup => match clients::packages::Packages::ensure_all() {
            Ok(packages) => {
                let root = packages.root();
                println!("client packages ready in {}", root.canonicalize().as_deref().unwrap_or(root).display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("test_shell chromium setup: {error}");
                ExitCode::FAILURE
            }
        },
        ChromiumCommand::Clients { json } => match clients::run(&program(), &mut |line| eprintln!("{line}")) {
            Ok(report) => {
                if json {
                    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
                } else {
                    let mut stdout = std::io::stdout().lock();
                    if let Err(error) = report.write_table(&mut stdout) {
                        eprintln!("test_shell chromium clients: {error}");
                        return ExitCode::FAILURE;
                    }
                }
                if report.passed() {
                    ExitCode::SUCCESS
                } else {
                    for failure in &report.failures {
                        eprintln!("test_shell chromium clients: {failure}");
                    }
                    ExitCode::FAILURE
                }
            }
            Err(error) => {
                eprintln!("test_shell chromium clients: {error}");
                ExitCode::FAILURE
            }
        },
    }
}

/// The bench binary's name; it sits beside this one in a cargo target directory.
const BENCH_BINARY: &str = "test_shell_bench";

/// Replaces this process with the bench binary beside it, or says how to build it.
fn bench(args: Vec<std::ffi::OsString>) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let bench = program().with_file_name(BENCH_BINARY);
    if !bench.is_file() {
        eprintln!(
            "test_shell bench: the bench is its own binary, {BENCH_BINARY}, and there is none at {}; build it \
             with `cargo build --release -p cos_shell_bench` (the same profile as this test_shell), or run it \
             directly with `cargo run --release -p cos_shell_bench -- [ARGS]`",
            bench.display()
        );
        return ExitCode::FAILURE;
    }
    // exec only returns on failure.
    let error = std::process::Command::new(&bench).args(args).exec();
    eprintln!("test_shell bench: could not run {}: {error}", bench.display());
    ExitCode::FAILURE
}

fn scrub(profile: &std::path::Path, json: bool) -> ExitCode {
    if !profile.join("cos").is_dir() {
        eprintln!("test_shell scrub: {} holds no Cross-Origin Storage (no cos/ directory)", profile.display());
        return ExitCode::FAILURE;
    }
    let outcome = page::ShellBrowser::start(&program(), Some(profile)).map_err(|e| e.to_string()).and_then(|browser| {
        let mut last_print = std::time::Instant::now();
        let progress = |report: &cos_common::interface::ScrubReport, total: u64| {
            let done = report.entries_checked + report.missing_removed;
            if last_print.elapsed() >= Duration::from_secs(1) || done == total {
                last_print = std::time::Instant::now();
                eprintln!(
                    "scrub: {done}/{total} entries, {:.1} MiB re-hashed",
                    report.bytes_checked as f64 / 1048576.0
                );
            }
        };
        browser.host().scrub(cos_common::Partition::Regular, progress).map_err(|e| e.to_string())
    });
    match outcome {
        Ok(report) => {
            if json {
                let json = serde_json::json!({
                    "entries_checked": report.entries_checked,
                    "bytes_checked": report.bytes_checked,
                    "corrupt_removed": report.corrupt_removed,
                    "missing_removed": report.missing_removed,
                });
                println!("{json}");
            } else {
                println!(
                    "{} entries re-hashed ({} bytes): {} damaged and deleted, {} missing and deleted",
                    report.entries_checked, report.bytes_checked, report.corrupt_removed, report.missing_removed
                );
            }
            if report.corrupt_removed + report.missing_removed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(error) => {
            eprintln!("test_shell scrub: {error}");
            ExitCode::FAILURE
        }
    }
}

fn internals(profile: Option<PathBuf>, public_hash_list: Option<PathBuf>, port: u16, dump: bool) -> ExitCode {
    let temporary = match profile {
        Some(_) => None,
        None => match tempfile::tempdir() {
            Ok(dir) => Some(dir),
            Err(error) => {
                eprintln!("test_shell internals: {error}");
                return ExitCode::FAILURE;
            }
        },
    };
    let profile = profile.unwrap_or_else(|| temporary.as_ref().map(|dir| dir.path().to_path_buf()).unwrap_or_default());
    match test_shell::internals::run(&program(), &profile, public_hash_list.as_deref(), port, dump) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("test_shell internals: {error}");
            ExitCode::FAILURE
        }
    }
}

fn wpt(test: &std::path::Path, origin: &str, profile: Option<&std::path::Path>, timeout: Duration) -> ExitCode {
    let outcome = (|| -> Result<Vec<js::TestResult>, page::PageError> {
        let browser = page::ShellBrowser::start(&program(), profile)?;
        if test.extension().is_some_and(|ext| ext == "html") {
            return browser.run_html_test(test, origin, timeout);
        }
        let page = browser.open(origin)?;
        page.run_test_file(test, timeout)
    })();
    finish(outcome.map_err(|e| e.to_string()))
}

fn chromium_wpt(test: PathBuf, origin: String, wpt_root: Option<PathBuf>, timeout: Duration) -> ExitCode {
    use cos_shell_chromium::wpt::{WptVariant, report, run_wpt};
    // Chromium and the bridge run on other threads; the whole run is given up on here.
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let variants = [WptVariant::Window, WptVariant::Worker];
        let _ = sender.send(run_wpt(program(), &test, &origin, wpt_root.as_deref(), &variants));
    });
    let outcome = match receiver.recv_timeout(timeout) {
        Ok(outcome) => outcome.map_err(|e| e.to_string()),
        Err(_) => Err(format!("the tests did not complete within {} s", timeout.as_secs())),
    };
    match outcome {
        Ok(results) => match report(&results, &mut std::io::stdout().lock()) {
            Ok(true) => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        },
        Err(error) => {
            eprintln!("test_shell: {error}");
            println!("0 passed, 1 failed");
            // Not waiting for the run thread: Chromium leaves when its DevTools pipe closes and
            // the service when its parent does, both at this exit.
            std::process::exit(1)
        }
    }
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
