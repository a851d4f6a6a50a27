//! Finding and launching headless Chromium with the DevTools protocol on a pipe.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use parking_lot::Mutex;

use super::DevToolsError;

/// Where Debian's package installs Chromium.
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// How much of Chromium's stderr is kept for error messages.
const STDERR_TAIL_BYTES: usize = 8 * 1024;

/// Chromium's executable: `$CHROMIUM` if set (and executable), else [`DEFAULT_CHROMIUM`].
pub fn find_chromium() -> Result<PathBuf, DevToolsError> {
    let from_env = std::env::var_os("CHROMIUM").filter(|value| !value.is_empty());
    locate(from_env, Path::new(DEFAULT_CHROMIUM))
}

fn locate(from_env: Option<OsString>, default: &Path) -> Result<PathBuf, DevToolsError> {
    if let Some(value) = from_env {
        let path = PathBuf::from(&value);
        // A CHROMIUM that is set but unusable is a typo worth naming, not a reason to fall back.
        return if is_executable_file(&path) {
            Ok(path)
        } else {
            Err(DevToolsError::NotFound(format!(" (CHROMIUM={} is not an executable file)", path.display())))
        };
    }
    if is_executable_file(default) { Ok(default.to_path_buf()) } else { Err(DevToolsError::NotFound(String::new())) }
}

/// Follows symlinks, since /usr/bin/chromium is often one.
fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The last few KiB Chromium wrote to stderr, kept for error messages.
#[derive(Clone, Default)]
pub struct StderrTail(Arc<Mutex<Vec<u8>>>);

impl StderrTail {
    /// The tail as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).trim().to_owned()
    }

    fn push(&self, bytes: &[u8]) {
        let mut tail = self.0.lock();
        tail.extend_from_slice(bytes);
        if tail.len() > STDERR_TAIL_BYTES {
            let cut = tail.len() - STDERR_TAIL_BYTES;
            tail.drain(..cut);
        }
    }
}

/// A running Chromium: killed (and reaped) on drop, with its profile directory.
pub struct ChromiumProcess {
    child: Child,
    /// Commands go here (Chromium's fd 3).
    pub(crate) commands: Option<std::fs::File>,
    /// Responses and events come from here (Chromium's fd 4).
    pub(crate) events: Option<std::fs::File>,
    /// Chromium's stderr tail.
    pub stderr: StderrTail,
    _profile: tempfile::TempDir,
}

impl ChromiumProcess {
    /// Launches headless Chromium with `--remote-debugging-pipe` on a fresh profile, plus `extra`
    /// flags (e.g. `--host-resolver-rules=...`).
    pub fn launch(extra: &[String]) -> Result<Self, DevToolsError> {
        let program = find_chromium()?;
        let profile = tempfile::Builder::new().prefix("cos-chromium-").tempdir().map_err(DevToolsError::Io)?;
        let mut command = Command::new(&program);
        command.args([
            "--headless",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-pipe",
            // One site per renderer process, always: the bridge closes a tab whose document
            // claims a site other than its target's (see `bridge`), which holds only then.
            "--site-per-process",
            // Local Network Access: pages treated as public would have their loopback requests
            // (our capability URLs) silently blocked; the permission is also granted over the
            // protocol, this covers builds where the permission name differs.
            "--disable-features=LocalNetworkAccessChecks",
            "about:blank",
        ]);
        command.arg(format!("--user-data-dir={}", profile.path().display()));
        if rustix::process::geteuid().is_root() {
            // Chromium refuses to run its own sandbox as root.
            command.arg("--no-sandbox");
        }
        command.args(extra);
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());

        let (command_read, command_write) = pipe()?;
        let (event_read, event_write) = pipe()?;
        let (child_in, child_out) = (command_read.as_raw_fd(), event_write.as_raw_fd());
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe calls (fcntl, dup2) on descriptors this process owns and keeps
        // open until after spawn. It first moves both ends above 4 so that dup2 onto 3 and 4
        // cannot clobber one with the other; dup2 clears close-on-exec on 3 and 4 only.
        unsafe {
            command.pre_exec(move || {
                let input = libc::fcntl(child_in, libc::F_DUPFD_CLOEXEC, 10);
                let output = libc::fcntl(child_out, libc::F_DUPFD_CLOEXEC, 10);
                if input < 0 || output < 0 || libc::dup2(input, 3) < 0 || libc::dup2(output, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|error| DevToolsError::Spawn { path: program.clone(), error })?;
        drop((command_read, event_write));

        let stderr = StderrTail::default();
        if let Some(mut pipe) = child.stderr.take() {
            let tail = stderr.clone();
            std::thread::Builder::new()
                .name("chromium-stderr".into())
                .spawn(move || {
                    let mut buffer = [0u8; 4096];
                    while let Ok(n) = pipe.read(&mut buffer) {
                        if n == 0 {
                            break;
                        }
                        tail.push(&buffer[..n]);
                    }
                })
                .map_err(DevToolsError::Io)?;
        }
        Ok(Self {
            child,
            commands: Some(std::fs::File::from(command_write)),
            events: Some(std::fs::File::from(event_read)),
            stderr,
            _profile: profile,
        })
    }

    /// Chromium's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChromiumProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), DevToolsError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| DevToolsError::Io(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_but_unusable_chromium_variable_is_named() {
        let error = locate(Some("/nonexistent/chromium".into()), Path::new("/nonexistent/default")).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("apt-get install chromium"), "{text}");
        assert!(text.contains("CHROMIUM=/nonexistent/chromium"), "{text}");
        assert!(locate(None, Path::new("/nonexistent/default")).is_err());
    }

    /// All in one function: these are the cases that depend on `CHROMIUM`, exercised through
    /// the same lookup `find_chromium` uses, with the variable's value passed in rather than set
    /// (setting it would race with the Chromium tests reading it).
    #[test]
    fn finds_chromium_through_the_chromium_variable() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let executable = dir.path().join("my-chromium");
        std::fs::write(&executable, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&executable, std::fs::Permissions::from_mode(0o755)).unwrap();
        let plain = dir.path().join("not-executable");
        std::fs::write(&plain, "").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let absent = dir.path().join("absent");
        let env = |path: &Path| Some(path.as_os_str().to_owned());
        let found =
            |from_env: Option<OsString>, default: &Path| locate(from_env.filter(|v| !v.is_empty()), default).ok();

        assert_eq!(found(env(&executable), &absent), Some(executable.clone()));
        assert_eq!(found(env(&executable), &plain), Some(executable.clone()));
        // An unusable CHROMIUM does not fall back to the default: the typo is named instead.
        assert_eq!(found(env(&plain), &executable), None);
        assert_eq!(found(env(&plain), &absent), None);
        assert_eq!(found(env(dir.path()), &absent), None);
        assert_eq!(found(None, &executable), Some(executable.clone()));
        assert_eq!(found(Some(OsString::new()), &executable), Some(executable.clone()));
        assert_eq!(found(None, &plain), None);

        let reason = locate(env(&plain), &absent).unwrap_err().to_string();
        assert!(reason.contains("not-executable is not an executable file"), "{reason}");
    }
}
