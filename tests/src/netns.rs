//! Network namespaces, veth pairs, and TCP helpers that work inside a namespace.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::env::SCOPE_ENV;
use crate::proc::{wait_for, wait_until, ProcBuilder};

/// How long a namespace's drop waits for its processes after SIGTERM (then SIGKILL).
const NETNS_TERM_GRACE: Duration = Duration::from_secs(5);
/// Poll interval of the accept loops of `TcpEcho` / `TcpForward`.
const ACCEPT_POLL: Duration = Duration::from_millis(20);

/// Runs a command on the host and returns its stdout; a non-zero exit is an error that
/// names the command and keeps its stderr and stdout.
pub fn run_cmd(cmd: &mut Command) -> Result<String> {
    let described = describe(cmd);
    let out = cmd
        .output()
        .with_context(|| format!("starting `{described}`"))?;
    check_output(&described, out)
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn check_output(described: &str, out: Output) -> Result<String> {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    bail!(
        "`{described}` failed ({}): stderr: {} stdout: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        stdout.trim()
    )
}

/// A network namespace `ip netns add NAME` with loopback up. Drop terminates every process
/// still inside (SIGTERM, then SIGKILL) and deletes it. Create it with `TestEnv::netns`.
pub struct Netns {
    name: String,
    scope: String,
    inode: Option<u64>,
    /// False only for config unit tests that never create the namespace.
    managed: bool,
}

impl Netns {
    pub(crate) fn create(name: String, scope: String) -> Result<Netns> {
        run_cmd(Command::new("ip").args(["netns", "add", &name]))?;
        // From here on the guard owns the namespace, so any failure below removes it.
        let mut ns = Netns {
            name,
            scope,
            inode: None,
            managed: true,
        };
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        ns.inode = std::fs::metadata(ns.path()).ok().map(|m| m.ino());
        Ok(ns)
    }

    /// A value naming a namespace that is never created or deleted (config unit tests).
    #[cfg(test)]
    pub(crate) fn unmanaged_for_tests(name: String) -> Netns {
        Netns {
            name,
            scope: String::new(),
            inode: None,
            managed: false,
        }
    }

    /// The namespace name (also usable as `ip -n NAME`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/NAME`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    pub(crate) fn inode(&self) -> Option<u64> {
        self.inode
    }

    /// `ip netns exec NAME argv...` as a `Command` (with the scope variable set), to run or
    /// spawn yourself.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name])
            .args(argv)
            .env(SCOPE_ENV, &self.scope);
        cmd
    }

    /// Runs `argv` inside the namespace; stdout, or an error with stderr on non-zero exit.
    pub fn run(&self, argv: &[&str]) -> Result<String> {
        run_cmd(&mut self.command(argv))
    }

    /// Runs `argv` inside the namespace and returns its output whatever the exit status.
    pub fn output(&self, argv: &[&str]) -> Result<Output> {
        let mut cmd = self.command(argv);
        cmd.output()
            .with_context(|| format!("starting `{}`", describe(&cmd)))
    }

    /// A `ProcBuilder` for a long-running process inside this namespace.
    pub fn spawn(&self, program: impl Into<std::ffi::OsString>) -> ProcBuilder {
        ProcBuilder::new(program).netns(self)
    }

    /// Runs `f` on a new thread that has joined this namespace: sockets created in `f` live
    /// in the namespace (and stay there when moved out of `f`).
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R> {
        let file = File::open(self.path())
            .with_context(|| format!("opening {}", self.path().display()))?;
        std::thread::scope(|s| {
            s.spawn(move || -> Result<R> {
                nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("joining network namespace {}", self.name))?;
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow!("thread inside namespace {} panicked", self.name))?
        })
    }

    /// A TCP listener bound inside the namespace (serve it from any thread).
    pub fn tcp_listen(&self, addr: SocketAddr) -> Result<TcpListener> {
        self.enter(|| TcpListener::bind(addr))?
            .with_context(|| format!("binding {addr} in namespace {}", self.name))
    }

    /// One TCP connection attempt from inside the namespace.
    pub fn tcp_connect(&self, addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
        self.enter(|| TcpStream::connect_timeout(&addr, timeout))?
            .with_context(|| format!("connecting to {addr} from namespace {}", self.name))
    }

    /// Polls until a TCP connection to `addr` from inside the namespace succeeds.
    pub fn wait_for_tcp(&self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        let what = format!("TCP {addr} reachable from namespace {}", self.name);
        wait_for(timeout, &what, || {
            Ok(self
                .tcp_connect(addr, Duration::from_millis(500))
                .ok()
                .map(|_| ()))
        })
    }

    /// A TCP echo server listening on `addr` inside the namespace.
    pub fn tcp_echo(&self, addr: SocketAddr) -> Result<TcpEcho> {
        TcpEcho::start(self.tcp_listen(addr)?)
    }

    /// Listens on `listen` inside the namespace and forwards each connection to `target` on
    /// the host (e.g. an in-process core-lite on 127.0.0.1), so processes in the namespace
    /// can reach it at `listen`.
    pub fn forward_to_host(&self, listen: SocketAddr, target: SocketAddr) -> Result<TcpForward> {
        TcpForward::start(self.tcp_listen(listen)?, target)
    }

    /// Pids of the processes inside the namespace (`ip netns pids`).
    pub fn pids(&self) -> Result<Vec<i32>> {
        let out = run_cmd(Command::new("ip").args(["netns", "pids", &self.name]))?;
        Ok(parse_pids(&out))
    }

    fn kill_all(&self, signal: Signal) {
        for pid in self.pids().unwrap_or_default() {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }
}

fn parse_pids(out: &str) -> Vec<i32> {
    out.split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.managed {
            return;
        }
        let empty = |ns: &Netns| ns.pids().map(|p| p.is_empty()).unwrap_or(true);
        if !empty(self) {
            self.kill_all(Signal::SIGTERM);
            if wait_until(NETNS_TERM_GRACE, "namespace processes exit", || empty(self)).is_err() {
                self.kill_all(Signal::SIGKILL);
                let _ = wait_until(NETNS_TERM_GRACE, "namespace processes killed", || {
                    empty(self)
                });
            }
        }
        if let Err(e) = run_cmd(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("e2e: deleting namespace {}: {e:#}", self.name);
        }
    }
}

/// A veth pair between two namespaces, both ends addressed and up; deleted on drop (it also
/// disappears with either namespace). Create it with `TestEnv::veth` or `Veth::create`.
pub struct Veth {
    ns_a: String,
    name_a: String,
    addr_a: Ipv4Addr,
    ns_b: String,
    name_b: String,
    addr_b: Ipv4Addr,
}

impl Veth {
    /// `cidr_a`/`cidr_b` like `10.99.1.1/24` (use 10.x addresses: they only exist inside the
    /// test's namespaces).
    pub fn create(
        a: &Netns,
        name_a: &str,
        cidr_a: &str,
        b: &Netns,
        name_b: &str,
        cidr_b: &str,
    ) -> Result<Veth> {
        let addr_a = parse_cidr_addr(cidr_a)?;
        let addr_b = parse_cidr_addr(cidr_b)?;
        run_cmd(Command::new("ip").args([
            "link", "add", name_a, "netns", &a.name, "type", "veth", "peer", "name", name_b,
            "netns", &b.name,
        ]))?;
        let veth = Veth {
            ns_a: a.name.clone(),
            name_a: name_a.to_string(),
            addr_a,
            ns_b: b.name.clone(),
            name_b: name_b.to_string(),
            addr_b,
        };
        for (ns, dev, cidr) in [(a, name_a, cidr_a), (b, name_b, cidr_b)] {
            run_cmd(Command::new("ip").args(["-n", &ns.name, "addr", "add", cidr, "dev", dev]))?;
            run_cmd(Command::new("ip").args(["-n", &ns.name, "link", "set", dev, "up"]))?;
        }
        Ok(veth)
    }

    /// Address of the end in namespace `a`.
    pub fn addr_a(&self) -> Ipv4Addr {
        self.addr_a
    }

    /// Address of the end in namespace `b`.
    pub fn addr_b(&self) -> Ipv4Addr {
        self.addr_b
    }

    /// Device name of the end in namespace `a`.
    pub fn name_a(&self) -> &str {
        &self.name_a
    }

    /// Device name of the end in namespace `b`.
    pub fn name_b(&self) -> &str {
        &self.name_b
    }
}

fn parse_cidr_addr(cidr: &str) -> Result<Ipv4Addr> {
    let addr = cidr.split('/').next().unwrap_or(cidr);
    addr.parse()
        .with_context(|| format!("`{cidr}` is not an IPv4 address/prefix"))
}

impl Drop for Veth {
    fn drop(&mut self) {
        let ns_exists = PathBuf::from("/run/netns").join(&self.ns_a).exists();
        if !ns_exists {
            return; // the pair went away with the namespace
        }
        if let Err(e) =
            run_cmd(Command::new("ip").args(["-n", &self.ns_a, "link", "del", &self.name_a]))
        {
            eprintln!(
                "e2e: deleting veth {}/{} ({}): {e:#}",
                self.name_a, self.name_b, self.ns_b
            );
        }
    }
}

/// Writes `payload` on `stream`, half-closes it, reads everything back and checks it is the
/// same (against a `TcpEcho`).
pub fn tcp_echo_roundtrip(mut stream: TcpStream, payload: &[u8], timeout: Duration) -> Result<()> {
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream
        .write_all(payload)
        .context("sending to the echo server")?;
    stream
        .shutdown(Shutdown::Write)
        .context("half-closing the echo connection")?;
    let mut back = Vec::new();
    stream
        .read_to_end(&mut back)
        .context("reading the echo reply")?;
    if back != payload {
        bail!(
            "echo returned {} bytes that differ from the {} sent",
            back.len(),
            payload.len()
        );
    }
    Ok(())
}

/// Stop flag + accept thread shared by `TcpEcho` and `TcpForward`.
struct AcceptLoop {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    local: SocketAddr,
}

impl AcceptLoop {
    fn start(
        listener: TcpListener,
        handle: impl Fn(TcpStream, &Mutex<Vec<TcpStream>>) + Send + 'static,
    ) -> Result<AcceptLoop> {
        let local = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (stop2, conns2) = (stop.clone(), conns.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if stream.set_nonblocking(false).is_ok() {
                            if let Ok(clone) = stream.try_clone() {
                                if let Ok(mut c) = conns2.lock() {
                                    c.push(clone);
                                }
                            }
                            handle(stream, &conns2);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(ACCEPT_POLL)
                    }
                    Err(_) => std::thread::sleep(ACCEPT_POLL),
                }
            }
        });
        Ok(AcceptLoop {
            stop,
            thread: Some(thread),
            conns,
            local,
        })
    }
}

impl Drop for AcceptLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Ok(conns) = self.conns.lock() {
            for c in conns.iter() {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

/// A TCP echo server (one thread per connection); stopped on drop.
pub struct TcpEcho {
    inner: AcceptLoop,
}

impl TcpEcho {
    /// Serves `listener` (e.g. from `Netns::tcp_listen`).
    pub fn start(listener: TcpListener) -> Result<TcpEcho> {
        let inner = AcceptLoop::start(listener, |stream, _| {
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                if let Ok(mut reader) = stream.try_clone() {
                    let mut writer = stream;
                    let _ = std::io::copy(&mut reader, &mut writer);
                    let _ = writer.shutdown(Shutdown::Write);
                }
            });
        })?;
        Ok(TcpEcho { inner })
    }

    /// The listening address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }
}

/// Forwards connections accepted on a listener to `target`; stopped on drop.
pub struct TcpForward {
    inner: AcceptLoop,
}

impl TcpForward {
    /// Serves `listener`, connecting each accepted connection to `target` from the calling
    /// process's namespace.
    pub fn start(listener: TcpListener, target: SocketAddr) -> Result<TcpForward> {
        let inner = AcceptLoop::start(listener, move |inbound, conns| {
            let Ok(outbound) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
                let _ = inbound.shutdown(Shutdown::Both);
                return;
            };
            if let (Ok(mut c), Ok(clone)) = (conns.lock(), outbound.try_clone()) {
                c.push(clone);
            }
            for (from, to) in [(&inbound, &outbound), (&outbound, &inbound)] {
                if let (Ok(mut r), Ok(mut w)) = (from.try_clone(), to.try_clone()) {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut r, &mut w);
                        let _ = w.shutdown(Shutdown::Write);
                    });
                }
            }
        })?;
        Ok(TcpForward { inner })
    }

    /// The listening address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_are_parsed_from_ip_output() {
        let cases: &[(&str, Vec<i32>)] = &[
            ("", vec![]),
            ("123\n", vec![123]),
            ("1\n22\n333\n", vec![1, 22, 333]),
            ("12\ngarbage\n", vec![12]),
        ];
        for (input, want) in cases {
            assert_eq!(&parse_pids(input), want, "input {input:?}");
        }
    }

    #[test]
    fn cidr_addresses_are_parsed() {
        assert_eq!(
            parse_cidr_addr("10.99.1.2/24").ok(),
            Some(Ipv4Addr::new(10, 99, 1, 2))
        );
        assert_eq!(
            parse_cidr_addr("10.0.0.1").ok(),
            Some(Ipv4Addr::new(10, 0, 0, 1))
        );
        assert!(parse_cidr_addr("nonsense/24").is_err());
    }

    #[test]
    fn run_cmd_keeps_stderr_in_the_error() -> Result<()> {
        let Err(err) = run_cmd(Command::new("sh").args(["-c", "echo oops >&2; exit 3"])) else {
            bail!("a failing command succeeded");
        };
        let msg = format!("{err:#}");
        assert!(
            msg.contains("oops") && msg.contains("exit status: 3"),
            "{msg}"
        );
        assert_eq!(
            run_cmd(Command::new("sh").args(["-c", "echo hi"])).ok(),
            Some("hi\n".to_string())
        );
        Ok(())
    }

    #[test]
    fn echo_and_forward_work_on_loopback() -> Result<()> {
        let echo = TcpEcho::start(TcpListener::bind("127.0.0.1:0")?)?;
        let fwd = TcpForward::start(TcpListener::bind("127.0.0.1:0")?, echo.local_addr())?;
        let stream = TcpStream::connect(fwd.local_addr())?;
        tcp_echo_roundtrip(stream, b"through the forwarder", Duration::from_secs(10))?;
        Ok(())
    }
}
