//! The management connection: connecting (unix socket or TCP), the reader task (lines →
//! [`openvpn_mgmt::Event`]s) and the writer task (command lines), and the queue of commands
//! waiting for their answer.

use std::collections::VecDeque;
use std::time::Duration;

use openvpn_mgmt::{self as mgmt, Event as MgmtEvent, ReadItem};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::event::Ev;
use super::MgmtAddr;

type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// How long a connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

async fn connect(addr: &MgmtAddr) -> std::io::Result<(BoxRead, BoxWrite)> {
    match addr {
        MgmtAddr::Unix(p) => {
            let s = tokio::net::UnixStream::connect(p).await?;
            let (r, w) = s.into_split();
            Ok((Box::new(r), Box::new(w)))
        }
        MgmtAddr::Tcp(a) => {
            let s = tokio::net::TcpStream::connect(a.as_str()).await?;
            s.set_nodelay(true)?;
            let (r, w) = s.into_split();
            Ok((Box::new(r), Box::new(w)))
        }
    }
}

/// After `delay`, connects to `addr` and starts the reader and writer tasks of connection
/// `gen`; reports [`Ev::Connected`] (with the line sender) or [`Ev::ConnectFailed`].
pub fn spawn_connect(
    addr: MgmtAddr,
    gen: u64,
    delay: Duration,
    tx: mpsc::Sender<Ev>,
    cancel: CancellationToken,
) {
    tokio::spawn(
        async move {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            let (rd, wr) = match tokio::time::timeout(CONNECT_TIMEOUT, connect(&addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    let error = e.to_string();
                    let _ = tx.send(Ev::ConnectFailed { gen, error }).await;
                    return;
                }
                Err(_) => {
                    let error = "connect timed out".to_string();
                    let _ = tx.send(Ev::ConnectFailed { gen, error }).await;
                    return;
                }
            };
            let conn_cancel = cancel.child_token();
            let (ltx, lrx) = mpsc::unbounded_channel();
            tokio::spawn(reader_task(rd, gen, tx.clone(), conn_cancel.clone()).in_current_span());
            tokio::spawn(
                writer_task(wr, lrx, gen, tx.clone(), conn_cancel.clone()).in_current_span(),
            );
            let _ = tx
                .send(Ev::Connected {
                    gen,
                    lines: ltx,
                    conn_cancel,
                })
                .await;
        }
        .in_current_span(),
    );
}

async fn reader_task(rd: BoxRead, gen: u64, tx: mpsc::Sender<Ev>, cancel: CancellationToken) {
    let mut r = mgmt::LineReader::new(BufReader::new(rd));
    let mut asm = mgmt::Assembler::new();
    let reason = loop {
        let res = tokio::select! {
            _ = cancel.cancelled() => return,
            res = r.next() => res,
        };
        let event = match res {
            Err(e) => break format!("read error: {e}"),
            Ok(None) => break "closed by OpenVPN".to_string(),
            Ok(Some(ReadItem::Line(line))) => asm.feed(&line),
            Ok(Some(ReadItem::TooLong { len })) => Some(MgmtEvent::Garbage(format!(
                "line of {len} bytes dropped (longer than {} bytes)",
                mgmt::MAX_LINE
            ))),
            Ok(Some(ReadItem::Unterminated { len })) => Some(MgmtEvent::Garbage(format!(
                "unterminated last line of {len} bytes dropped"
            ))),
        };
        if let Some(event) = event {
            if tx.send(Ev::Mgmt { gen, event }).await.is_err() {
                return;
            }
        }
    };
    let _ = tx.send(Ev::Closed { gen, reason }).await;
}

async fn writer_task(
    mut wr: BoxWrite,
    mut rx: mpsc::UnboundedReceiver<String>,
    gen: u64,
    tx: mpsc::Sender<Ev>,
    cancel: CancellationToken,
) {
    loop {
        let line = tokio::select! {
            _ = cancel.cancelled() => return,
            l = rx.recv() => l,
        };
        let Some(mut line) = line else { return };
        line.push('\n');
        let res = wr.write_all(line.as_bytes()).await;
        let res = match res {
            Ok(()) => wr.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = res {
            let reason = format!("write error: {e}");
            let _ = tx.send(Ev::Closed { gen, reason }).await;
            return;
        }
    }
}

/// What an answer from OpenVPN belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// The management password.
    Password,
    /// A command; `true` when its answer is a multi-line block (`status`).
    Cmd(bool),
}

/// The commands sent and not answered yet, oldest first.
#[derive(Debug, Default)]
pub struct Replies(VecDeque<Pending>);

impl Replies {
    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn sent(&mut self, p: Pending) {
        self.0.push_back(p);
    }

    /// A one-line answer (`SUCCESS:` / `ERROR:`) answers the oldest.
    pub fn line_answer(&mut self) {
        self.0.pop_front();
    }

    /// A block answers the oldest multi-line command (and everything before it).
    pub fn block_answer(&mut self) {
        while let Some(p) = self.0.pop_front() {
            if p == Pending::Cmd(true) {
                break;
            }
        }
    }
}
