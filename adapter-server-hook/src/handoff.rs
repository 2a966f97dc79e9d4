//! The hook's side of the hand-off: connect to the monitor's socket without waiting,
//! check who listens, write the event and return; the monitor never answers (see
//! [`crate::wire`]).
//!
//! [`hand_off`] returns `Ok(())` once the whole event was written, i.e. when the monitor
//! owns it; every error means the monitor has not taken it (and cannot: a connection the
//! hook failed to write a whole frame to is dropped by the monitor as cut short).

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};

use crate::wire::{self, Request, WireError};

/// Bound on writing the event. The frame (at most about 70 KiB) goes into the
/// connection's receive queue, which takes it whole whether or not the monitor has
/// accepted the connection yet, so the write does not wait in practice; the bound only
/// covers a kernel short of memory.
pub const WRITE_TIMEOUT: Duration = Duration::from_millis(500);

/// Why the event was not handed off (the hook then runs the full hook).
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    #[error("encoding the event: {0}")]
    Encode(#[source] WireError),
    #[error("socket path {0} is too long for a unix socket")]
    Path(PathBuf),
    #[error("connecting to {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("reading the peer of {path}: {source}")]
    PeerCred {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("{path} is served by uid {uid}, neither root nor this user")]
    Peer { path: PathBuf, uid: u32 },
    #[error("setting up the connection: {0}")]
    Setup(#[source] std::io::Error),
    #[error("sending the event: {0}")]
    Send(#[source] std::io::Error),
}

/// Connects without blocking: a socket that is absent, refused or whose backlog is full
/// (a monitor that has as many events in hand as it takes, or does not accept) fails at
/// once.
fn connect(path: &Path) -> Result<UnixStream, HandoffError> {
    let addr = UnixAddr::new(path).map_err(|_| HandoffError::Path(path.to_path_buf()))?;
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| HandoffError::Connect {
        path: path.to_path_buf(),
        source: e,
    })?;
    socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr).map_err(|e| {
        HandoffError::Connect {
            path: path.to_path_buf(),
            source: e,
        }
    })?;
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false).map_err(HandoffError::Setup)?;
    Ok(stream)
}

/// The listening side must be root or this hook's own user: the request carries a
/// password, and nobody else may collect it by binding a socket at the path first.
fn check_peer(stream: &UnixStream, path: &Path) -> Result<(), HandoffError> {
    let cred = socket::getsockopt(&stream.as_fd(), sockopt::PeerCredentials).map_err(|e| {
        HandoffError::PeerCred {
            path: path.to_path_buf(),
            source: e,
        }
    })?;
    let uid = cred.uid();
    if uid == 0 || uid == nix::unistd::geteuid().as_raw() {
        Ok(())
    } else {
        Err(HandoffError::Peer {
            path: path.to_path_buf(),
            uid,
        })
    }
}

/// Hands `req` to the monitor listening on `path`; `Ok(())` once the monitor owns it.
pub fn hand_off(path: &Path, req: &Request, timeout: Duration) -> Result<(), HandoffError> {
    let frame = wire::encode_request(req).map_err(HandoffError::Encode)?;
    let mut stream = connect(path)?;
    check_peer(&stream, path)?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(HandoffError::Setup)?;
    stream.write_all(&frame).map_err(HandoffError::Send)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::net::UnixListener;

    use super::*;
    use crate::wire::Kind;

    fn request() -> Request {
        Request {
            kind: Kind::ClientDisconnect,
            env: vec![("bytes_received", b"1".to_vec())],
            credentials: None,
        }
    }

    fn read_request(s: &mut UnixStream) -> Request {
        let mut header = [0u8; wire::HEADER_LEN];
        s.read_exact(&mut header).expect("header");
        let mut body = vec![0u8; wire::body_len(&header).expect("len")];
        s.read_exact(&mut body).expect("body");
        wire::decode_body(&body).expect("body")
    }

    /// The event is handed off before the monitor accepts the connection: it waits in the
    /// kernel, whole, and the hook never waits for the monitor.
    #[test]
    fn handed_off_before_the_monitor_accepts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("s");
        let l = UnixListener::bind(&sock).expect("bind");
        let mut big = request();
        big.kind = Kind::Auth;
        big.env = wire::ENV_VARS
            .iter()
            .map(|n| (*n, vec![b'v'; wire::MAX_VALUE]))
            .collect();
        big.credentials = Some(vec![b'c'; wire::MAX_CREDENTIALS]);
        for req in [request(), big] {
            hand_off(&sock, &req, Duration::from_millis(200)).expect("handed off");
            let (mut s, _) = l.accept().expect("accept");
            assert_eq!(read_request(&mut s), req);
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).expect("eof");
            assert!(rest.is_empty(), "bytes after the request: {rest:?}");
        }
    }

    /// Nobody listening, a dead socket, or a monitor whose backlog is full (it has as many
    /// events in hand as it takes): not handed off, at once, so the hook falls back.
    #[test]
    fn not_handed_off_when_nobody_takes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let absent = dir.path().join("absent");
        assert!(matches!(
            hand_off(&absent, &request(), Duration::from_secs(1)),
            Err(HandoffError::Connect { .. })
        ));
        let dead = dir.path().join("dead");
        drop(UnixListener::bind(&dead).expect("bind"));
        assert!(matches!(
            hand_off(&dead, &request(), Duration::from_secs(1)),
            Err(HandoffError::Connect { .. })
        ));
        // A listener with a backlog of one that never accepts.
        let full = dir.path().join("full");
        let l = UnixListener::bind(&full).expect("bind");
        nix::sys::socket::listen(&l, nix::sys::socket::Backlog::new(1).expect("backlog"))
            .expect("listen");
        let mut queued = 0;
        let started = std::time::Instant::now();
        let got = loop {
            match hand_off(&full, &request(), Duration::from_secs(1)) {
                Ok(()) => queued += 1,
                Err(e) => break e,
            }
            assert!(queued < 16, "the backlog never filled");
        };
        assert!(matches!(got, HandoffError::Connect { .. }), "{got:?}");
        assert!(queued > 0, "not even the first connection was queued");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a full backlog made the hook wait"
        );
        drop(l);
    }
}
