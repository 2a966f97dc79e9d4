//! The real `openvpn`: a child process started with [`OpenVpnCommand`], a task that waits
//! for its exit, and a task on its management socket (connect with retries, then a writer
//! task for commands and the bounded line reader for what OpenVPN says).

use std::path::{Path, PathBuf};
use std::time::Duration;

use openvpn_mgmt::{self as mgmt, Command, ReadItem};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn, Instrument};

use super::process::{
    KillSignal, MgmtLink, OpenVpnLauncher, OpenVpnProcess, ProcEvent, ProcEvents,
};
use crate::openvpn::{OpenVpnCommand, OutputTail};

/// How long one management command may take to write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Starts `openvpn --config CONFIG` processes whose management socket is `socket`.
#[derive(Debug)]
pub(crate) struct RealOpenVpn {
    program: PathBuf,
    config: PathBuf,
    socket: PathBuf,
    connect_timeout: Duration,
    /// The management reader of the last process: it keeps reading after the exit (the
    /// last lines still count) until the next process starts.
    reader: Option<CancellationToken>,
}

impl RealOpenVpn {
    pub(crate) fn new(
        program: &Path,
        config: &Path,
        socket: &Path,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            program: program.to_path_buf(),
            config: config.to_path_buf(),
            socket: socket.to_path_buf(),
            connect_timeout,
            reader: None,
        }
    }
}

/// A running child.
#[derive(Debug)]
pub(crate) struct RealProcess {
    pid: u32,
    tail: OutputTail,
    reader: CancellationToken,
}

impl OpenVpnLauncher for RealOpenVpn {
    type Process = RealProcess;

    fn mgmt_socket(&self) -> &Path {
        &self.socket
    }

    fn spawn(&mut self, events: ProcEvents) -> std::io::Result<RealProcess> {
        if let Some(old) = self.reader.take() {
            old.cancel();
        }
        let _ = std::fs::remove_file(&self.socket);
        let (mut child, tail) = OpenVpnCommand::new(&self.program, &self.config).spawn()?;
        let pid = child.id().unwrap_or(0);
        let waiter_events = events.clone();
        // The reader's end: OpenVPN's last lines (its final BYTECOUNT, EXITING) are read
        // and forwarded before the exit is reported, or they would come after the session
        // was closed with older counts.
        let reader_done = CancellationToken::new();
        let drained = reader_done.clone();
        tokio::spawn(
            async move {
                let status = match child.wait().await {
                    Ok(st) => st.to_string(),
                    Err(e) => format!("wait failed: {e}"),
                };
                let _ = tokio::time::timeout(MGMT_DRAIN, drained.cancelled()).await;
                waiter_events.send(ProcEvent::Exited(status)).await;
            }
            .in_current_span(),
        );
        let reader = CancellationToken::new();
        tokio::spawn(
            mgmt_task(
                self.socket.clone(),
                events,
                self.connect_timeout,
                reader.clone(),
                reader_done,
            )
            .in_current_span(),
        );
        self.reader = Some(reader.clone());
        Ok(RealProcess { pid, tail, reader })
    }
}

impl OpenVpnProcess for RealProcess {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn signal(&self, sig: KillSignal) {
        if self.pid == 0 {
            return;
        }
        let sig = match sig {
            KillSignal::Term => nix::sys::signal::Signal::SIGTERM,
            KillSignal::Kill => nix::sys::signal::Signal::SIGKILL,
        };
        let Ok(raw) = i32::try_from(self.pid) else {
            return;
        };
        if let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), sig) {
            debug!("signal {sig} to openvpn pid {}: {e}", self.pid);
        }
    }

    fn output_tail(&self) -> Vec<String> {
        self.tail.lines()
    }

    fn stop_reading(&self) {
        self.reader.cancel();
    }
}

/// How long the exit waiter waits for the management reader to reach the end of the
/// socket (the kernel closes it when OpenVPN exits, so this is only a bound).
const MGMT_DRAIN: Duration = Duration::from_secs(1);

/// Connects to the management socket (retrying until `timeout`), then forwards parsed lines.
async fn mgmt_task(
    path: PathBuf,
    events: ProcEvents,
    timeout: Duration,
    cancel: CancellationToken,
    done: CancellationToken,
) {
    // Whatever way the reader ends, the exit waiter learns it.
    let _done = done.drop_guard();
    let deadline = Instant::now() + timeout;
    let stream = loop {
        let attempt = tokio::select! {
            r = UnixStream::connect(&path) => r,
            () = cancel.cancelled() => return,
        };
        match attempt {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline => {
                events
                    .send(ProcEvent::MgmtConnectFailed(e.to_string()))
                    .await;
                return;
            }
            Err(_) => {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    () = cancel.cancelled() => return,
                }
            }
        }
    };
    let (r, w) = stream.into_split();
    let (link, commands) = MgmtLink::new();
    tokio::spawn(writer_task(w, commands, events.clone()).in_current_span());
    if !events.send(ProcEvent::MgmtConnected(link)).await {
        return;
    }
    let mut r = mgmt::LineReader::new(BufReader::new(r));
    loop {
        let item = tokio::select! {
            l = r.next() => l,
            () = cancel.cancelled() => return,
        };
        match item {
            Ok(Some(ReadItem::Line(l))) => match mgmt::parse_line(&l) {
                Ok(line) => {
                    if !events.send(ProcEvent::Line(line)).await {
                        return;
                    }
                }
                Err(e) => warn!("unreadable management line: {e}"),
            },
            Ok(Some(ReadItem::TooLong { len })) => warn!(
                "management line of {len} bytes dropped (longer than {} bytes)",
                mgmt::MAX_LINE
            ),
            Ok(Some(ReadItem::Unterminated { len })) => {
                warn!("unterminated last management line of {len} bytes dropped")
            }
            Ok(None) | Err(_) => {
                events.send(ProcEvent::MgmtClosed).await;
                return;
            }
        }
    }
}

/// Writes the commands of a link in order; on the first failure it reports the command and
/// stops (the link is closed, so the actor falls back to signals).
async fn writer_task(
    mut w: OwnedWriteHalf,
    mut commands: mpsc::Receiver<Command>,
    events: ProcEvents,
) {
    while let Some(cmd) = commands.recv().await {
        let line = cmd.line();
        let failure = match tokio::time::timeout(WRITE_TIMEOUT, w.write_all(line.as_bytes())).await
        {
            Ok(Ok(())) => {
                debug!("management <- {}", line.trim_end());
                continue;
            }
            Ok(Err(e)) => format!("writing to the management socket failed: {e}"),
            Err(_) => "writing to the management socket timed out".to_string(),
        };
        warn!("{failure}");
        commands.close();
        events.send(ProcEvent::MgmtWriteFailed(cmd)).await;
        return;
    }
}
