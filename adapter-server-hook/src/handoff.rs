//! The hook's side of the hand-off: connect to the monitor's socket without waiting,
//! check who listens, send the request, wait a bounded time for the reply and commit.
//!
//! [`hand_off`] returns `Ok(())` only when the commit was written, i.e. when the monitor
//! owns the event; every error means the monitor has not taken it (see [`crate::wire`]).

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};

use crate::wire::{self, Reply, Request, WireError, SHORT_LEN};

/// How long the hook waits for the monitor's reply (after connecting; a connect never
/// waits). The monitor answers from its listener task without any core call, normally
/// within a millisecond; a monitor that has not answered by then is treated as absent.
pub const REPLY_TIMEOUT: Duration = Duration::from_millis(500);

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
    #[error("no reply from the monitor: {0}")]
    NoReply(#[source] std::io::Error),
    #[error("unusable reply from the monitor: {0}")]
    BadReply(#[source] WireError),
    #[error("the monitor refused the event")]
    Refused,
    #[error("committing the event: {0}")]
    Commit(#[source] std::io::Error),
}

/// Connects without blocking: a socket that is absent, refused or whose backlog is full
/// (a monitor that does not accept) fails at once.
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

/// Reads exactly `buf.len()` bytes before `deadline`.
fn read_by(stream: &mut UnixStream, buf: &mut [u8], deadline: Instant) -> std::io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[got..]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Hands `req` to the monitor listening on `path`; `Ok(())` once the monitor owns it.
pub fn hand_off(path: &Path, req: &Request, timeout: Duration) -> Result<(), HandoffError> {
    let frame = wire::encode_request(req).map_err(HandoffError::Encode)?;
    let deadline = Instant::now() + timeout;
    let mut stream = connect(path)?;
    check_peer(&stream, path)?;
    // The request is far smaller than a socket buffer: the write completes at once unless
    // the monitor stopped reading, which the timeout covers.
    stream
        .set_write_timeout(Some(timeout))
        .map_err(HandoffError::Setup)?;
    stream.write_all(&frame).map_err(HandoffError::Send)?;
    let mut reply = [0u8; SHORT_LEN];
    read_by(&mut stream, &mut reply, deadline).map_err(HandoffError::NoReply)?;
    match wire::decode_reply(&reply).map_err(HandoffError::BadReply)? {
        Reply::Ready => {}
        Reply::Refused => return Err(HandoffError::Refused),
    }
    stream
        .write_all(&wire::COMMIT)
        .map_err(HandoffError::Commit)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;
    use std::thread;

    use super::*;
    use crate::wire::{Kind, Reply};

    fn request() -> Request {
        Request {
            kind: Kind::ClientDisconnect,
            env: vec![("bytes_received", b"1".to_vec())],
            credentials: None,
        }
    }

    /// A one-connection monitor that reads the request, then does `then` with the stream;
    /// returns what it read after the request (the commit, if any).
    fn fake(
        path: &Path,
        then: impl FnOnce(&mut UnixStream) + Send + 'static,
    ) -> thread::JoinHandle<(Request, Vec<u8>)> {
        let l = UnixListener::bind(path).expect("bind");
        thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            let mut header = [0u8; wire::HEADER_LEN];
            s.read_exact(&mut header).expect("header");
            let mut body = vec![0u8; wire::body_len(&header).expect("len")];
            s.read_exact(&mut body).expect("body");
            let req = wire::decode_body(&body).expect("body");
            then(&mut s);
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            (req, rest)
        })
    }

    #[test]
    fn committed_only_after_a_ready_reply() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("s");
        let t = fake(&sock, |s| {
            s.write_all(&wire::encode_reply(Reply::Ready))
                .expect("reply")
        });
        hand_off(&sock, &request(), Duration::from_secs(5)).expect("handed off");
        let (req, rest) = t.join().expect("join");
        assert_eq!(req, request());
        assert_eq!(rest, wire::COMMIT, "no commit after the reply");
    }

    #[test]
    fn every_other_answer_means_not_handed_off_and_no_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let absent = dir.path().join("absent");
        assert!(matches!(
            hand_off(&absent, &request(), Duration::from_secs(1)),
            Err(HandoffError::Connect { .. })
        ));
        // A socket file nobody listens on (a monitor that died): refused at once.
        let dead = dir.path().join("dead");
        drop(UnixListener::bind(&dead).expect("bind"));
        assert!(matches!(
            hand_off(&dead, &request(), Duration::from_secs(1)),
            Err(HandoffError::Connect { .. })
        ));
        type Then = Box<dyn FnOnce(&mut UnixStream) + Send>;
        type Want = fn(&HandoffError) -> bool;
        let cases: Vec<(&str, Then, Want)> = vec![
            (
                "refused",
                Box::new(|s: &mut UnixStream| {
                    s.write_all(&wire::encode_reply(Reply::Refused)).expect("w")
                }),
                |e| matches!(e, HandoffError::Refused),
            ),
            (
                "closed without a reply",
                Box::new(|s: &mut UnixStream| {
                    s.shutdown(std::net::Shutdown::Write).expect("shutdown")
                }),
                |e| matches!(e, HandoffError::NoReply(_)),
            ),
            (
                "no reply in time",
                Box::new(|_: &mut UnixStream| thread::sleep(Duration::from_millis(600))),
                |e| matches!(e, HandoffError::NoReply(_)),
            ),
            (
                "garbage reply",
                Box::new(|s: &mut UnixStream| s.write_all(b"HTTP/1.1").expect("w")),
                |e| matches!(e, HandoffError::BadReply(_)),
            ),
            (
                "reply of another version",
                Box::new(|s: &mut UnixStream| s.write_all(b"ASHK\x02R").expect("w")),
                |e| matches!(e, HandoffError::BadReply(WireError::Version(2))),
            ),
        ];
        for (i, (what, then, want)) in cases.into_iter().enumerate() {
            let sock = dir.path().join(format!("s{i}"));
            let t = fake(&sock, then);
            let got = hand_off(&sock, &request(), Duration::from_millis(200));
            match &got {
                Err(e) if want(e) => {}
                other => panic!("{what}: {other:?}"),
            }
            let (_, rest) = t.join().expect("join");
            assert!(rest.is_empty(), "{what}: committed {rest:?}");
        }
    }
}
