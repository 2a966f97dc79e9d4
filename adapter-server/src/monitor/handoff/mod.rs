//! The hand-off socket: `adapter-server-hook`, the small script OpenVPN runs, hands its
//! events (a login, a client-connect, a client-disconnect) to the monitor here instead of
//! starting the full `adapter-server` (docs/INTERFACES.md, "Hook hand-off").
//!
//! [`Listener::bind`] makes the socket (mode 0600, owned by OpenVPN's user, created under a
//! temporary name and renamed into place, so it is never reachable with other permissions;
//! a live socket of another monitor is never taken over, a stale one is replaced, anything
//! that is not a socket is left alone). The accept task serves each connection in its own
//! task (`conn.rs`): the peer must be root or OpenVPN's user (`SO_PEERCRED`), the request is
//! bounded in size and time and parsed by [`adapter_server_hook::wire`]. The hook does not
//! wait for any of this: its event is the monitor's once it was written (see the `wire`
//! docs), so the monitor never drops a valid event for lack of room; it stops *accepting*
//! instead, when [`MAX_CONNECTIONS`] events are in hand, and the kernel's backlog then
//! refuses new hooks, which fall back. When the monitor stops, the socket's path goes
//! first and the connections the kernel still holds are served before the task ends.
//! Logins are answered through `auth_control_file` (`auth.rs`); connects and disconnects
//! go into the client table, merged with the management events of the same connection id.

mod auth;
mod conn;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use adapter_server_hook::wire::{Kind, Request};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

use super::event::Ev;
use crate::script_env::RawEnv;

pub use auth::PendingLogins;

/// Hand-off connections served at once (events read but not yet in the actor's queue);
/// beyond it the monitor stops accepting and the kernel's backlog takes the next ones, up
/// to its own bound, beyond which hooks fall back.
const MAX_CONNECTIONS: usize = 256;

/// The listen backlog: connections the kernel holds for the monitor before it accepts
/// them. OpenVPN runs its scripts one at a time, so a monitor that keeps accepting never
/// has more than one or two here; a small bound means that a monitor that stopped
/// accepting altogether (hung) swallows at most this many events (OpenVPN fails those
/// logins at its hand-window timeout and the clients retry) before hooks fall back.
const BACKLOG: i32 = 16;

/// Where the monitor listens for hand-offs and who may use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoffConfig {
    pub path: PathBuf,
    /// OpenVPN's user (the uid its scripts run as): owner of the socket and, with root,
    /// the only peer accepted.
    pub owner: u32,
}

/// Errors of setting up the socket.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    #[error("creating the directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is in use by another process (another monitor?)")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; not replaced")]
    NotASocket(PathBuf),
    #[error("replacing the stale socket {path}: {source}")]
    RemoveStale {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("listening on {path}: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One committed hand-off, for the actor.
#[derive(Debug)]
pub struct HandoffEvent {
    pub kind: Kind,
    pub env: RawEnv,
    /// The via-file credentials file (auth).
    pub credentials: Option<Vec<u8>>,
    /// Uid of the hook that handed it over (the answer files must belong to it).
    pub peer_uid: u32,
}

impl HandoffEvent {
    fn new(req: Request, peer_uid: u32) -> Self {
        Self {
            kind: req.kind,
            env: RawEnv::from_bytes(req.env),
            credentials: req.credentials,
            peer_uid,
        }
    }
}

/// The bound hand-off socket.
pub struct Listener {
    listener: tokio::net::UnixListener,
    path: PathBuf,
    allowed: [u32; 2],
}

/// Leaves `path` free for a new socket: absent, or a stale socket (nobody accepts on it)
/// that is removed.
fn clear_stale(path: &Path) -> Result<(), HandoffError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(HandoffError::RemoveStale {
                path: path.to_path_buf(),
                source: e,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(HandoffError::NotASocket(path.to_path_buf()));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(HandoffError::InUse(path.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => std::fs::remove_file(path)
            .map_err(|e| HandoffError::RemoveStale {
                path: path.to_path_buf(),
                source: e,
            }),
        Err(e) => Err(HandoffError::RemoveStale {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

impl Listener {
    /// Creates the socket (see the module docs). Needs a tokio runtime.
    pub fn bind(cfg: &HandoffConfig) -> Result<Self, HandoffError> {
        let path = cfg.path.clone();
        let bind_err = |e: std::io::Error| HandoffError::Bind {
            path: path.clone(),
            source: e,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| HandoffError::Dir {
                path: dir.to_path_buf(),
                source: e,
            })?;
        }
        clear_stale(&path)?;
        let name = path
            .file_name()
            .ok_or_else(|| bind_err(std::io::ErrorKind::InvalidInput.into()))?;
        let tmp = path.with_file_name(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        clear_stale(&tmp)?;
        let std_listener = std::os::unix::net::UnixListener::bind(&tmp).map_err(bind_err)?;
        let setup = nix::sys::socket::Backlog::new(BACKLOG)
            .and_then(|b| nix::sys::socket::listen(&std_listener, b))
            .map_err(std::io::Error::from)
            .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)))
            .and_then(|()| std::os::unix::fs::chown(&tmp, Some(cfg.owner), None))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .and_then(|()| std_listener.set_nonblocking(true));
        if let Err(e) = setup {
            let _ = std::fs::remove_file(&tmp);
            return Err(bind_err(e));
        }
        let listener = tokio::net::UnixListener::from_std(std_listener).map_err(bind_err)?;
        info!(socket = %path.display(), owner = cfg.owner, "hand-off socket listening");
        Ok(Self {
            listener,
            path,
            allowed: [0, cfg.owner],
        })
    }

    /// Accepts hand-offs until `cancel` fires; then removes the socket and serves the
    /// connections already queued (their hooks have exited counting them as handed off),
    /// and ends when every connection is served.
    pub fn spawn(
        self,
        tx: mpsc::Sender<Ev>,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.serve(tx, cancel).in_current_span())
    }

    async fn serve(self, tx: mpsc::Sender<Ev>, cancel: CancellationToken) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let serve_one = |stream: tokio::net::UnixStream, slot: OwnedSemaphorePermit| {
            let (tx, allowed) = (tx.clone(), self.allowed);
            tokio::spawn(
                async move {
                    conn::serve(stream, allowed, tx).await;
                    drop(slot);
                }
                .in_current_span(),
            );
        };
        loop {
            let slot = tokio::select! {
                _ = cancel.cancelled() => break,
                s = slots.clone().acquire_owned() => s,
            };
            let Ok(slot) = slot else { break };
            if slots.available_permits() == 0 {
                warn!(
                    "{MAX_CONNECTIONS} hand-offs in hand; accepting no more until the event \
                     queue has room (new hooks run the full hook)"
                );
            }
            let accepted = tokio::select! {
                _ = cancel.cancelled() => break,
                a = self.listener.accept() => a,
            };
            match accepted {
                Ok((stream, _)) => serve_one(stream, slot),
                Err(e) => {
                    warn!("accepting a hand-off: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
        // No hook can connect once the path is gone; the connections the kernel already
        // holds are served like the others.
        let is_socket =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.file_type().is_socket());
        if is_socket {
            let _ = std::fs::remove_file(&self.path);
        }
        let mut drained = 0usize;
        match self.listener.into_std() {
            Ok(listener) => loop {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let stream = stream
                            .set_nonblocking(true)
                            .and_then(|()| tokio::net::UnixStream::from_std(stream));
                        let slot = slots.clone().acquire_owned().await;
                        match (stream, slot) {
                            (Ok(stream), Ok(slot)) => {
                                drained += 1;
                                serve_one(stream, slot);
                            }
                            (Err(e), _) => warn!("a hand-off queued at stop: {e}"),
                            (_, Err(_)) => break,
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        warn!("accepting the hand-offs queued at stop: {e}");
                        break;
                    }
                }
            },
            Err(e) => warn!("the hand-offs queued at stop are lost: {e}"),
        }
        if drained > 0 {
            info!(
                drained,
                "served the hand-offs queued when the monitor stopped"
            );
        }
        // Every connection task returns its slot when done.
        let _ = slots.acquire_many(MAX_CONNECTIONS as u32).await;
    }
}
