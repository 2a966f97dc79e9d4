//! The `openvpn` process as the connection actor sees it: something that can be started,
//! signalled and watched. The actor only knows these traits; [`super::real`] implements them
//! with a real child process and its management socket, the unit tests with an in-memory
//! fake.
//!
//! Everything a process does reaches the actor as a [`ProcEvent`] on the actor's channel,
//! tagged with the generation the actor gave the process when it started it (so the late
//! events of an earlier process are recognised): the management connection coming up (with
//! the [`MgmtLink`] to send commands on) or failing, each parsed management line, the
//! connection closing, a command that could not be written, and the exit.

use std::path::Path;

use openvpn_mgmt::{Command, Line};
use tokio::sync::mpsc;

use super::actor::Event;

/// What happened to a process (or its management connection).
#[derive(Debug)]
pub(crate) enum ProcEvent {
    /// The management socket accepted the adapter; commands go out on the link.
    MgmtConnected(MgmtLink),
    /// The management socket never came up within the timeout.
    MgmtConnectFailed(String),
    /// One complete management line.
    Line(Line),
    /// The management connection ended (EOF or a read error).
    MgmtClosed,
    /// A command could not be written (error or timeout); the link is closed.
    MgmtWriteFailed(Command),
    /// The process exited (`status` as the OS tells it).
    Exited(String),
}

/// Where a process sends its events: the actor's channel, with the process's generation.
#[derive(Debug, Clone)]
pub(crate) struct ProcEvents {
    gen: u64,
    tx: mpsc::Sender<Event>,
}

impl ProcEvents {
    pub(crate) fn new(gen: u64, tx: mpsc::Sender<Event>) -> Self {
        Self { gen, tx }
    }
    /// Delivers one event; false when the actor is gone.
    pub(crate) async fn send(&self, ev: ProcEvent) -> bool {
        self.tx
            .send(Event::Proc { gen: self.gen, ev })
            .await
            .is_ok()
    }
}

/// Sends management commands to one process. Writing happens elsewhere (a writer task for
/// the real socket), so sending never blocks the actor.
#[derive(Debug, Clone)]
pub(crate) struct MgmtLink(mpsc::Sender<Command>);

/// Commands queued on a link at most (the adapter sends a handful per connection).
pub(crate) const MGMT_QUEUE: usize = 32;

impl MgmtLink {
    /// A link and the receiving end its writer reads.
    pub(crate) fn new() -> (Self, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(MGMT_QUEUE);
        (Self(tx), rx)
    }
    /// Queues `cmd`; false when the link is closed (its writer failed or is gone) or full.
    pub(crate) fn send(&self, cmd: Command) -> bool {
        self.0.try_send(cmd).is_ok()
    }
}

/// The signals the actor sends a process directly (when management cannot be used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KillSignal {
    Term,
    Kill,
}

/// Starts `openvpn` processes.
pub(crate) trait OpenVpnLauncher: Send + 'static {
    type Process: OpenVpnProcess;
    /// The management socket every process of this launcher serves (from the config).
    fn mgmt_socket(&self) -> &Path;
    /// Starts a process whose events go to `events`. Stops reading the management output of
    /// the previous process, which was kept until now for its last lines.
    fn spawn(&mut self, events: ProcEvents) -> std::io::Result<Self::Process>;
}

/// One running `openvpn` process.
pub(crate) trait OpenVpnProcess: Send + 'static {
    /// Its pid (0 when unknown).
    fn pid(&self) -> u32;
    /// Sends `sig` to the process.
    fn signal(&self, sig: KillSignal);
    /// The last lines of its own output, for error reports.
    fn output_tail(&self) -> Vec<String>;
    /// Stops reading its management socket (the process is given up on).
    fn stop_reading(&self);
}
