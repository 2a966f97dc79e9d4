//! The per-test environment: skip policy, unique names, temporary directory, binaries.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::leaks::LeakChecker;
use crate::netns::{Netns, Veth};

/// When set to `1`, a missing requirement (root, /dev/net/tun, tools) fails the test instead
/// of skipping it. CI (`scripts/test.sh`) sets it.
pub const REQUIRED_ENV: &str = "E2E_REQUIRED";
/// Every process the harness starts gets `E2E_SCOPE=<prefix>` in its environment, so the
/// leak checker finds it whatever its command line is.
pub const SCOPE_ENV: &str = "E2E_SCOPE";
/// When set (any value), the test's temporary directory (configs, logs) is kept.
const KEEP_ENV: &str = "E2E_KEEP";

/// Tools that every e2e test needs in `PATH`.
const REQUIRED_TOOLS: &[&str] = &["ip", "openvpn", "openssl"];

static SCOPE_COUNTER: AtomicU32 = AtomicU32::new(0);
static SUBNET_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Why e2e tests cannot run here, or `Ok(())` when they can: needs root, `/dev/net/tun` and
/// the tools `ip`, `openvpn`, `openssl`.
pub fn check_requirements() -> Result<(), String> {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root (network namespaces)".to_string());
    }
    if !Path::new("/dev/net/tun").exists() {
        missing.push("/dev/net/tun".to_string());
    }
    for tool in REQUIRED_TOOLS {
        if find_in_path(tool).is_none() {
            missing.push(format!("`{tool}` in PATH"));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("needs {}", missing.join(", ")))
    }
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

pub(crate) fn required() -> bool {
    std::env::var(REQUIRED_ENV).is_ok_and(|v| v == "1")
}

/// One test's scope. Create it first in the test (so it is dropped last); all guards made
/// through it carry its prefix.
pub struct TestEnv {
    name: String,
    prefix: String,
    dir: Option<TempDir>,
    counter: AtomicU32,
    netns_inodes: Arc<Mutex<Vec<u64>>>,
}

impl TestEnv {
    /// `Ok(None)` (after printing "skipped: ...") when the requirements are missing and
    /// `E2E_REQUIRED` is not `1`; an error when they are missing and it is.
    pub fn new(test_name: &str) -> Result<Option<TestEnv>> {
        if let Err(reason) = check_requirements() {
            if required() {
                bail!("e2e test `{test_name}` cannot run: {reason} ({REQUIRED_ENV}=1 is set)");
            }
            eprintln!(
                "e2e test `{test_name}` skipped: {reason} (set {REQUIRED_ENV}=1 to fail instead)"
            );
            return Ok(None);
        }
        Self::new_unchecked(test_name).map(Some)
    }

    /// Like `new`, and the workspace binaries `bins` (e.g. `["core-lite", "adapter-server"]`)
    /// must have been built (`cargo build --workspace --bins`); same skip/fail policy.
    pub fn with_bins(test_name: &str, bins: &[&str]) -> Result<Option<TestEnv>> {
        let Some(env) = Self::new(test_name)? else {
            return Ok(None);
        };
        for bin in bins {
            if let Err(e) = bin_path(bin) {
                if required() {
                    return Err(e.context(format!("e2e test `{test_name}` cannot run")));
                }
                eprintln!("e2e test `{test_name}` skipped: {e:#}");
                return Ok(None);
            }
        }
        Ok(Some(env))
    }

    /// A scope without the requirement check (for harness unit tests of names and configs).
    pub fn new_unchecked(test_name: &str) -> Result<TestEnv> {
        let n = SCOPE_COUNTER.fetch_add(1, Ordering::Relaxed);
        // Fixed widths: no prefix can be a prefix of another one (pid < 2^22 fits 6 hex digits).
        let prefix = format!("e{:06x}{:02x}", std::process::id() & 0xff_ffff, n & 0xff);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir()
            .context("creating the test's temporary directory")?;
        Ok(TestEnv {
            name: test_name.to_string(),
            prefix,
            dir: Some(dir),
            counter: AtomicU32::new(0),
            netns_inodes: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// The test name given to `new`.
    pub fn test_name(&self) -> &str {
        &self.name
    }

    /// The unique prefix (9 characters) of every resource name of this scope.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The temporary directory (configs, keys, logs); removed on drop unless the test panics
    /// or `E2E_KEEP` is set.
    pub fn dir(&self) -> &Path {
        match &self.dir {
            Some(d) => d.path(),
            None => Path::new("/nonexistent"),
        }
    }

    /// `dir()/name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// A fresh unique name `<prefix><kind><n>` (at most 15 characters, so it is usable as a
    /// network device name).
    pub fn unique_name(&self, kind: char) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}{kind}{:x}", self.prefix, n & 0xfff)
    }

    /// A process-wide unique number 1..=250 for test subnets (`10.8.X.0/24` of a server,
    /// `10.99.X.0/24` of a veth).
    pub fn next_subnet(&self) -> u8 {
        let n = SUBNET_COUNTER.fetch_add(1, Ordering::Relaxed);
        // `n % 250` is below 250, so the cast cannot truncate.
        (n % 250) as u8 + 1
    }

    /// A new network namespace (loopback up), deleted on drop.
    pub fn netns(&self) -> Result<Netns> {
        let ns = Netns::create(self.unique_name('n'), self.prefix.clone())?;
        if let Some(inode) = ns.inode() {
            if let Ok(mut v) = self.netns_inodes.lock() {
                v.push(inode);
            }
        }
        Ok(ns)
    }

    /// A veth pair between `a` and `b` with addresses `10.99.X.1/24` (in `a`) and
    /// `10.99.X.2/24` (in `b`), both up.
    pub fn veth(&self, a: &Netns, b: &Netns) -> Result<Veth> {
        let x = self.next_subnet();
        let name = self.unique_name('v');
        Veth::create(
            a,
            &format!("{name}a"),
            &format!("10.99.{x}.1/24"),
            b,
            &format!("{name}b"),
            &format!("10.99.{x}.2/24"),
        )
    }

    /// A checker for what this scope leaves behind; keep it past the guards' drop.
    pub fn leak_checker(&self) -> LeakChecker {
        LeakChecker::new(self.prefix.clone(), self.netns_inodes.clone())
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let keep = std::thread::panicking() || std::env::var_os(KEEP_ENV).is_some();
        if keep {
            if let Some(dir) = self.dir.take() {
                let path = dir.keep();
                eprintln!("e2e test `{}`: kept {}", self.name, path.display());
            }
        }
    }
}

/// Path of a workspace binary (`core-lite`, `adapter-server`, `adapter-client`) built by
/// `cargo build --workspace --bins`. Looks in `$E2E_BIN_DIR`, next to this test executable's
/// profile dir, `$CARGO_TARGET_DIR/debug`, `<workspace>/target/debug`.
pub fn bin_path(name: &str) -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("E2E_BIN_DIR") {
        candidates.push(PathBuf::from(dir));
    }
    // The test executable is `<target>/<profile>/deps/e2e-<hash>`.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
            candidates.push(profile_dir.to_path_buf());
        }
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join("debug"));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug"));
    for dir in &candidates {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(path);
        }
    }
    bail!(
        "binary `{name}` not found (looked in {}); run `cargo build --workspace --bins` first \
         or set E2E_BIN_DIR",
        candidates
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_short_and_prefixed() -> Result<()> {
        let a = TestEnv::new_unchecked("names-a")?;
        let b = TestEnv::new_unchecked("names-b")?;
        assert_ne!(a.prefix(), b.prefix());
        assert_eq!(a.prefix().len(), 9);
        let n1 = a.unique_name('n');
        let n2 = a.unique_name('n');
        assert_ne!(n1, n2);
        assert!(n1.starts_with(a.prefix()));
        // Device names: at most 15 bytes, even for veth ends (`<name>a`) after many names.
        for _ in 0..300 {
            let v = format!("{}a", a.unique_name('v'));
            assert!(v.len() <= 15, "{v} too long");
        }
        assert!(a.dir().starts_with(std::env::temp_dir()));
        assert!(a
            .dir()
            .file_name()
            .is_some_and(|f| f.to_string_lossy().starts_with(a.prefix())));
        Ok(())
    }

    #[test]
    fn subnets_stay_in_range() -> Result<()> {
        let env = TestEnv::new_unchecked("subnets")?;
        for _ in 0..600 {
            let x = env.next_subnet();
            assert!((1..=250).contains(&x));
        }
        Ok(())
    }

    #[test]
    fn missing_binary_is_a_clear_error() -> Result<()> {
        let Err(err) = bin_path("no-such-binary-e2e") else {
            bail!("found a binary that does not exist");
        };
        let msg = format!("{err:#}");
        assert!(msg.contains("cargo build --workspace --bins"), "{msg}");
        Ok(())
    }
}
