//! The pinned npm packages of the real client libraries, fetched at set-up time.
//!
//! Nothing downloads while tests run except this: when a pinned package is missing from the
//! cache directory ([`default_dir`]: `$COS_CLIENTS_DIR`, else `<workspace>/target/cos-clients`),
//! `npm pack <name>@<version>` fetches its tarball from the registry and `tar` unpacks it to
//! `<dir>/<name with '/' as '+'>@<version>/`. Then the files the client pages load are checked,
//! and so is each exact dependency the pin relies on (e.g. the `onnxruntime-web` build a
//! Transformers.js version was published against). The packages are never committed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable naming the cache directory.
pub const CLIENTS_DIR_ENV: &str = "COS_CLIENTS_DIR";

/// One pinned npm package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Package {
    /// The npm name, e.g. `@huggingface/transformers`.
    pub name: &'static str,
    /// The exact version.
    pub version: &'static str,
    /// Files (relative to the package root, `/`-separated) the client pages load; the loopback
    /// CDN serves exactly these (and `package.json`).
    pub files: &'static [&'static str],
    /// Dependencies its `package.json` must pin to exactly this version (name, version): what
    /// the pages load next to it was chosen to match.
    pub pinned_dependencies: &'static [(&'static str, &'static str)],
}

impl Package {
    /// `name@version`, as npm takes it.
    pub fn spec(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The directory name under the cache directory: `name@version` with `/` as `+`.
    pub fn dir_name(&self) -> String {
        self.spec().replace('/', "+")
    }
}

/// The `onnxruntime-web` build Transformers.js 4.3.2 depends on.
pub const ORT_WEB_FOR_TRANSFORMERS_4_3_2: Package = Package {
    name: "onnxruntime-web",
    version: "1.31.0-dev.20260914-8d85527a0",
    files: ORT_FILES,
    pinned_dependencies: &[],
};

/// The `onnxruntime-web` build Transformers.js 4.2.0 depends on.
pub const ORT_WEB_FOR_TRANSFORMERS_4_2_0: Package = Package {
    name: "onnxruntime-web",
    version: "1.26.0-dev.20260416-b7804b056c",
    files: ORT_FILES,
    pinned_dependencies: &[],
};

/// The only runtime files Transformers.js needs from `onnxruntime-web` in a browser without
/// WebGPU: the asyncify build's loader and its Wasm (the pages point `wasmPaths` at them).
const ORT_FILES: &[&str] = &["dist/ort-wasm-simd-threaded.asyncify.mjs", "dist/ort-wasm-simd-threaded.asyncify.wasm"];

/// Transformers.js 4.3.2 (`requestFileHandle`, writes with `origins: '*'`).
pub const TRANSFORMERS_4_3_2: Package = Package {
    name: "@huggingface/transformers",
    version: "4.3.2",
    // The browser bundle (the package's `jsdelivr` entry).
    files: &["dist/transformers.min.js"],
    pinned_dependencies: &[("onnxruntime-web", ORT_WEB_FOR_TRANSFORMERS_4_3_2.version)],
};

/// Transformers.js 4.2.0 (`requestFileHandles`).
pub const TRANSFORMERS_4_2_0: Package = Package {
    name: "@huggingface/transformers",
    version: "4.2.0",
    files: &["dist/transformers.min.js"],
    pinned_dependencies: &[("onnxruntime-web", ORT_WEB_FOR_TRANSFORMERS_4_2_0.version)],
};

/// WebLLM 0.2.86 (`getFileHandle`, `appConfig.cacheBackend: "cross-origin"`). Its one
/// dependency, `loglevel`, is bundled into `lib/index.js`, which imports nothing.
pub const WEB_LLM_0_2_86: Package =
    Package { name: "@mlc-ai/web-llm", version: "0.2.86", files: &["lib/index.js"], pinned_dependencies: &[] };

/// wllama 3.13.0 (`getFileHandle`, chunked `writable.write`).
pub const WLLAMA_3_13_0: Package =
    Package { name: "@wllama/wllama", version: "3.13.0", files: &["esm/index.js"], pinned_dependencies: &[] };

/// Every pinned package.
pub const PACKAGES: &[Package] = &[
    TRANSFORMERS_4_3_2,
    ORT_WEB_FOR_TRANSFORMERS_4_3_2,
    TRANSFORMERS_4_2_0,
    ORT_WEB_FOR_TRANSFORMERS_4_2_0,
    WEB_LLM_0_2_86,
    WLLAMA_3_13_0,
];

/// Why the packages are not ready.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackagesError {
    /// `npm` is not installed.
    #[error("npm not found: install Node.js/npm (the client packages are fetched once with `npm pack`)")]
    NpmNotFound,
    /// `tar` is not installed.
    #[error("tar not found: install tar (it unpacks the client packages)")]
    TarNotFound,
    /// The registry could not be reached.
    #[error("the npm registry is unreachable while fetching {spec} (offline? proxy?): {detail}")]
    RegistryUnreachable {
        /// `name@version`.
        spec: String,
        /// What npm said.
        detail: String,
    },
    /// `npm pack` failed for another reason (e.g. no such version).
    #[error("`npm pack {spec}` failed ({status}): {detail}")]
    NpmFailed {
        /// `name@version`.
        spec: String,
        /// Its exit status.
        status: String,
        /// What npm said.
        detail: String,
    },
    /// `tar` could not unpack the tarball.
    #[error("unpacking {tarball} failed: {detail}")]
    TarFailed {
        /// The tarball.
        tarball: PathBuf,
        /// What tar said.
        detail: String,
    },
    /// The unpacked package lacks a file the pages load.
    #[error("{spec} has no {file} (at {path})")]
    MissingFile {
        /// `name@version`.
        spec: String,
        /// The file, relative to the package root.
        file: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The unpacked package is not the pinned one, or does not pin a dependency as expected.
    #[error("{spec}: {detail} (delete {dir} to fetch it again)")]
    Mismatch {
        /// `name@version`.
        spec: String,
        /// What differs.
        detail: String,
        /// The package's directory.
        dir: PathBuf,
    },
    /// Reading or writing the cache directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The cache directory: `$COS_CLIENTS_DIR` if set, else `<workspace>/target/cos-clients`.
pub fn default_dir() -> PathBuf {
    match std::env::var_os(CLIENTS_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/cos-clients"),
    }
}

/// The unpacked packages in a cache directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packages {
    root: PathBuf,
}

impl Packages {
    /// [`Packages::ensure`] of every pinned package ([`PACKAGES`]) in [`default_dir`].
    pub fn ensure_all() -> Result<Packages, PackagesError> {
        Packages::ensure(&default_dir(), PACKAGES)
    }

    /// Makes sure each of `packages` is unpacked under `root` (fetching the missing ones with
    /// `npm pack`) and has the files the pages need.
    pub fn ensure(root: &Path, packages: &[Package]) -> Result<Packages, PackagesError> {
        std::fs::create_dir_all(root).map_err(|source| io_error(root, source))?;
        let this = Packages { root: root.to_path_buf() };
        for package in packages {
            if !this.package_dir(package).join("package.json").is_file() {
                this.fetch(package)?;
            }
            this.verify(package)?;
        }
        Ok(this)
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `package` is unpacked (its `package.json` is directly inside).
    pub fn package_dir(&self, package: &Package) -> PathBuf {
        self.root.join(package.dir_name())
    }

    /// The path of `file` (relative to the package root) of `package`.
    pub fn file(&self, package: &Package, file: &str) -> PathBuf {
        self.package_dir(package).join(file)
    }

    /// Checks the unpacked `package`: its `package.json` names it at its version and pins its
    /// dependencies as expected, and every file of [`Package::files`] exists.
    pub fn verify(&self, package: &Package) -> Result<(), PackagesError> {
        let dir = self.package_dir(package);
        let manifest_path = dir.join("package.json");
        let text = std::fs::read_to_string(&manifest_path).map_err(|source| io_error(&manifest_path, source))?;
        let mismatch = |detail: String| PackagesError::Mismatch { spec: package.spec(), detail, dir: dir.clone() };
        let manifest: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| mismatch(format!("package.json is not JSON: {e}")))?;
        let (name, version) = (manifest["name"].as_str(), manifest["version"].as_str());
        if (name, version) != (Some(package.name), Some(package.version)) {
            return Err(mismatch(format!("package.json names {name:?}@{version:?}")));
        }
        for (dependency, pinned) in package.pinned_dependencies {
            let found = manifest["dependencies"][dependency].as_str();
            if found != Some(pinned) {
                return Err(mismatch(format!("depends on {dependency} {found:?}, not exactly {pinned}")));
            }
        }
        for file in package.files {
            let path = dir.join(file);
            if !path.is_file() {
                return Err(PackagesError::MissingFile { spec: package.spec(), file: (*file).to_owned(), path });
            }
        }
        Ok(())
    }

    /// `npm pack` into a scratch directory, unpack there, then move the package into place in
    /// one rename, so that an interrupted fetch never leaves a half-unpacked package behind and
    /// two processes fetching at once both end with a whole one.
    fn fetch(&self, package: &Package) -> Result<(), PackagesError> {
        static SCRATCH: AtomicU64 = AtomicU64::new(0);
        let scratch = self.root.join(format!(
            ".fetch-{}-{}-{}",
            package.dir_name(),
            std::process::id(),
            SCRATCH.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&scratch).map_err(|source| io_error(&scratch, source))?;
        let result = self.fetch_into(package, &scratch);
        let _ = std::fs::remove_dir_all(&scratch);
        result
    }

    fn fetch_into(&self, package: &Package, scratch: &Path) -> Result<(), PackagesError> {
        let spec = package.spec();
        tracing::info!(%spec, "fetching a client package with npm pack");
        let output = Command::new("npm")
            .args(["pack", &spec, "--json", "--ignore-scripts", "--pack-destination"])
            .arg(scratch)
            .current_dir(scratch)
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => PackagesError::NpmNotFound,
                _ => io_error(Path::new("npm"), e),
            })?;
        if !output.status.success() {
            return Err(npm_error(&spec, &output));
        }
        let tarball = tarball_name(&output.stdout)
            .map(|name| scratch.join(name))
            .filter(|path| path.is_file())
            .ok_or_else(|| PackagesError::NpmFailed {
                spec: spec.clone(),
                status: "0".to_owned(),
                detail: "it succeeded but wrote no tarball".to_owned(),
            })?;
        let unpacked = scratch.join("unpacked");
        std::fs::create_dir_all(&unpacked).map_err(|source| io_error(&unpacked, source))?;
        let tar =
            Command::new("tar").arg("-xzf").arg(&tarball).arg("-C").arg(&unpacked).output().map_err(|e| {
                match e.kind() {
                    std::io::ErrorKind::NotFound => PackagesError::TarNotFound,
                    _ => io_error(Path::new("tar"), e),
                }
            })?;
        if !tar.status.success() {
            let detail = String::from_utf8_lossy(&tar.stderr).trim().to_owned();
            return Err(PackagesError::TarFailed { tarball, detail });
        }
        // npm tarballs hold one top directory, `package/` by convention (not always).
        let top = single_subdirectory(&unpacked)?.ok_or_else(|| PackagesError::TarFailed {
            tarball: tarball.clone(),
            detail: "not one top-level directory".to_owned(),
        })?;
        let target = self.package_dir(package);
        if let Err(source) = std::fs::rename(&top, &target) {
            // Another process may have put it in place meanwhile.
            if !target.join("package.json").is_file() {
                return Err(io_error(&target, source));
            }
        }
        Ok(())
    }
}

fn io_error(path: &Path, source: std::io::Error) -> PackagesError {
    PackagesError::Io { path: path.to_path_buf(), source }
}

/// Tells an unreachable registry from other npm failures by npm's error codes.
fn npm_error(spec: &str, output: &Output) -> PackagesError {
    const NETWORK_CODES: &[&str] =
        &["ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENETUNREACH", "EHOSTUNREACH"];
    let stderr = String::from_utf8_lossy(&output.stderr);
    let detail = stderr.lines().filter(|l| l.contains("ERR") || l.contains("error")).take(6).collect::<Vec<_>>();
    let detail = if detail.is_empty() { stderr.trim().to_owned() } else { detail.join("; ") };
    if NETWORK_CODES.iter().any(|code| stderr.contains(code)) {
        PackagesError::RegistryUnreachable { spec: spec.to_owned(), detail }
    } else {
        PackagesError::NpmFailed { spec: spec.to_owned(), status: output.status.to_string(), detail }
    }
}

/// The tarball's file name from `npm pack --json` output (`[{"filename": ...}]`).
fn tarball_name(stdout: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(stdout).ok()?;
    let name = value.get(0)?.get("filename")?.as_str()?;
    // npm names scoped tarballs `scope-name-version.tgz`; only a plain file name is accepted.
    (!name.contains('/') && !name.contains("..")).then(|| name.to_owned())
}

fn single_subdirectory(dir: &Path) -> Result<Option<PathBuf>, PackagesError> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|source| io_error(dir, source))? {
        entries.push(entry.map_err(|source| io_error(dir, source))?.path());
    }
    Ok(match entries.as_slice() {
        [only] if only.is_dir() => Some(only.clone()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_directories() {
        assert_eq!(TRANSFORMERS_4_3_2.spec(), "@huggingface/transformers@4.3.2");
        assert_eq!(TRANSFORMERS_4_3_2.dir_name(), "@huggingface+transformers@4.3.2");
        assert_eq!(ORT_WEB_FOR_TRANSFORMERS_4_2_0.dir_name(), "onnxruntime-web@1.26.0-dev.20260416-b7804b056c");
    }

    #[test]
    fn tarball_names_come_from_npm_json() {
        let json = br#"[{"id":"@wllama/wllama@3.13.0","filename":"wllama-wllama-3.13.0.tgz"}]"#;
        assert_eq!(tarball_name(json).as_deref(), Some("wllama-wllama-3.13.0.tgz"));
        assert_eq!(tarball_name(br#"[{"filename":"../x.tgz"}]"#), None);
        assert_eq!(tarball_name(b"npm notice"), None);
    }

    #[test]
    fn a_package_missing_a_file_is_reported() {
        let root = tempfile::tempdir().unwrap();
        let package =
            Package { name: "@x/y", version: "1.0.0", files: &["dist/a.js"], pinned_dependencies: &[("z", "2")] };
        let packages = Packages { root: root.path().to_path_buf() };
        let dir = packages.package_dir(&package);
        std::fs::create_dir_all(dir.join("dist")).unwrap();
        std::fs::write(dir.join("package.json"), r#"{"name":"@x/y","version":"1.0.0","dependencies":{"z":"^2"}}"#)
            .unwrap();
        let err = packages.verify(&package).unwrap_err();
        assert!(matches!(err, PackagesError::Mismatch { .. }), "{err}");
        std::fs::write(dir.join("package.json"), r#"{"name":"@x/y","version":"1.0.0","dependencies":{"z":"2"}}"#)
            .unwrap();
        let err = packages.verify(&package).unwrap_err();
        assert!(matches!(err, PackagesError::MissingFile { .. }), "{err}");
        std::fs::write(dir.join("dist/a.js"), "").unwrap();
        packages.verify(&package).unwrap();
        // Present and whole: `ensure` does not fetch.
        Packages::ensure(root.path(), &[package]).unwrap();
    }
}
