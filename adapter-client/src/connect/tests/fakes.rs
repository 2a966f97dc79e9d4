//! In-memory fakes for the actor's unit tests: an `openvpn` launcher whose processes the test
//! plays (management lines, exit), and a core that answers like core-lite (per-field
//! maximum of the counts, `channel_inactive` with the status) and can be made unreachable
//! or slow.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openvpn_mgmt::{parse_line, Command};
use service_api::{
    ApiError, ErrorCode, ServiceStatus, SessionId, SpeedLimits, StartSessionRequest,
    StartSessionResponse, StopSessionRequest, StopSessionResponse, UpdateSessionRequest,
    UpdateSessionResponse,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::connect::calls::CoreApi;
use crate::connect::process::{
    KillSignal, MgmtLink, OpenVpnLauncher, OpenVpnProcess, ProcEvent, ProcEvents,
};

/// How long (virtual time) a test waits for something before it fails.
pub(super) const PATIENCE: Duration = Duration::from_secs(600);

/// Waits (virtual time) until `f` returns Some.
pub(super) async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

// ---- openvpn ------------------------------------------------------------------------

#[derive(Default)]
struct World {
    spawned: Vec<Played>,
    fail_spawns: u32,
}

/// A launcher of fake processes; the test takes each one with [`FakeLauncher::next`].
#[derive(Clone, Default)]
pub(super) struct FakeLauncher {
    world: Arc<Mutex<World>>,
    taken: Arc<Mutex<usize>>,
}

/// What a fake process records.
#[derive(Clone, Default)]
struct Record {
    signals: Arc<Mutex<Vec<KillSignal>>>,
    stopped_reading: Arc<Mutex<bool>>,
}

pub(super) struct FakeProcess {
    pid: u32,
    rec: Record,
}

/// The test's end of one fake `openvpn`: it says what OpenVPN would say.
pub(super) struct Played {
    pub(super) pid: u32,
    events: ProcEvents,
    rec: Record,
    commands: Option<mpsc::Receiver<Command>>,
}

impl FakeLauncher {
    /// The next `n` spawns fail.
    pub(super) fn fail_spawns(&self, n: u32) {
        self.world.lock().expect("lock").fail_spawns = n;
    }
    pub(super) fn spawn_count(&self) -> usize {
        self.world.lock().expect("lock").spawned.len() + *self.taken.lock().expect("lock")
    }
    /// The next process the actor started.
    pub(super) async fn next(&self) -> Played {
        until("the next openvpn start", || {
            let mut w = self.world.lock().expect("lock");
            if w.spawned.is_empty() {
                return None;
            }
            *self.taken.lock().expect("lock") += 1;
            Some(w.spawned.remove(0))
        })
        .await
    }
}

impl OpenVpnLauncher for FakeLauncher {
    type Process = FakeProcess;
    fn mgmt_socket(&self) -> &Path {
        Path::new("/fake/mgmt.sock")
    }
    fn spawn(&mut self, events: ProcEvents) -> std::io::Result<FakeProcess> {
        let mut w = self.world.lock().expect("lock");
        if w.fail_spawns > 0 {
            w.fail_spawns -= 1;
            return Err(std::io::Error::other("fake spawn failure"));
        }
        let pid =
            1000 + u32::try_from(w.spawned.len() + *self.taken.lock().expect("lock")).expect("pid");
        let rec = Record::default();
        w.spawned.push(Played {
            pid,
            events,
            rec: rec.clone(),
            commands: None,
        });
        Ok(FakeProcess { pid, rec })
    }
}

impl OpenVpnProcess for FakeProcess {
    fn pid(&self) -> u32 {
        self.pid
    }
    fn signal(&self, sig: KillSignal) {
        self.rec.signals.lock().expect("lock").push(sig);
    }
    fn output_tail(&self) -> Vec<String> {
        vec![format!("fake openvpn {} output", self.pid)]
    }
    fn stop_reading(&self) {
        *self.rec.stopped_reading.lock().expect("lock") = true;
    }
}

impl Played {
    /// The management socket accepts the adapter; the setup commands are read.
    pub(super) async fn connect(&mut self) {
        let (link, rx) = MgmtLink::new();
        self.commands = Some(rx);
        self.events.send(ProcEvent::MgmtConnected(link)).await;
        self.expect("state on").await;
        self.expect("bytecount 1").await;
    }
    /// The management socket never comes up.
    pub(super) async fn connect_failed(&self) {
        self.events
            .send(ProcEvent::MgmtConnectFailed("refused".into()))
            .await;
    }
    /// Closes the command side, as if the socket broke for writing.
    pub(super) fn break_writes(&mut self) {
        if let Some(rx) = self.commands.as_mut() {
            rx.close();
        }
    }
    /// One management line (parsed like the real reader does).
    pub(super) async fn say(&self, line: &str) {
        let line = parse_line(line).expect("a valid management line");
        self.events.send(ProcEvent::Line(line)).await;
    }
    pub(super) async fn exit(&self, status: &str) {
        self.events.send(ProcEvent::Exited(status.into())).await;
    }
    /// Reads commands until `cmd` (rendered) arrives; returns the virtual time it came.
    pub(super) async fn expect(&mut self, cmd: &str) -> Instant {
        let rx = self.commands.as_mut().expect("management connected");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let got = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {cmd:?}"))
                .unwrap_or_else(|| panic!("link closed while waiting for {cmd:?}"));
            if got.render() == cmd {
                return Instant::now();
            }
        }
    }
    /// Commands sent since the last read, without waiting.
    pub(super) fn pending_commands(&mut self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(rx) = self.commands.as_mut() {
            while let Ok(c) = rx.try_recv() {
                v.push(c.render());
            }
        }
        v
    }
    pub(super) fn signals(&self) -> Vec<KillSignal> {
        self.rec.signals.lock().expect("lock").clone()
    }
    pub(super) fn stopped_reading(&self) -> bool {
        *self.rec.stopped_reading.lock().expect("lock")
    }
}

// ---- core ---------------------------------------------------------------------------

/// A call the fake core received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Call {
    Start(String),
    Update(String, u64, u64),
    Stop(String, u64, u64),
}

#[derive(Debug)]
struct Sess {
    id: String,
    connection: String,
    counts: (u64, u64),
    stopped: bool,
}

#[derive(Debug)]
struct CoreState {
    status: ServiceStatus,
    sessions: Vec<Sess>,
    calls: Vec<Call>,
    down: bool,
}

/// A fake core (client side).
#[derive(Clone)]
pub(super) struct FakeCore {
    state: Arc<Mutex<CoreState>>,
    /// Calls wait while this is false.
    open: watch::Sender<bool>,
}

impl FakeCore {
    pub(super) fn new(status: ServiceStatus) -> Self {
        Self {
            state: Arc::new(Mutex::new(CoreState {
                status,
                sessions: Vec::new(),
                calls: Vec::new(),
                down: false,
            })),
            open: watch::Sender::new(true),
        }
    }
    pub(super) fn set_status(&self, s: ServiceStatus) {
        self.state.lock().expect("lock").status = s;
    }
    /// Unreachable: every call answers 503 (retryable, like a transport error).
    pub(super) fn set_down(&self, down: bool) {
        self.state.lock().expect("lock").down = down;
    }
    /// Slow: calls hang until released.
    pub(super) fn hold_calls(&self, hold: bool) {
        self.open.send_replace(!hold);
    }
    pub(super) fn calls(&self) -> Vec<Call> {
        self.state.lock().expect("lock").calls.clone()
    }
    /// The calls other than the status checks' probes and replays.
    pub(super) fn session_calls(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| !matches!(c, Call::Start(conn) if conn.starts_with("status-check:")))
            .collect()
    }
    pub(super) fn session(&self, id: &str) -> Option<((u64, u64), bool)> {
        let st = self.state.lock().expect("lock");
        st.sessions
            .iter()
            .find(|s| s.id == id)
            .map(|s| (s.counts, s.stopped))
    }

    async fn gate(&self) {
        let mut rx = self.open.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }

    fn api_err(code: ErrorCode, status: Option<ServiceStatus>) -> ApiError {
        ApiError::Api {
            http_status: code.http_status(),
            code,
            message: format!("fake core: {code:?}"),
            status,
        }
    }

    fn usage(
        &self,
        id: &SessionId,
        counts: (u64, u64),
        stop: bool,
    ) -> Result<(ServiceStatus, (u64, u64), bool), ApiError> {
        let mut st = self.state.lock().expect("lock");
        st.calls.push(if stop {
            Call::Stop(id.0.clone(), counts.0, counts.1)
        } else {
            Call::Update(id.0.clone(), counts.0, counts.1)
        });
        if st.down {
            return Err(Self::api_err(ErrorCode::Unavailable, None));
        }
        let status = st.status;
        let s = st
            .sessions
            .iter_mut()
            .find(|s| s.id == id.0)
            .ok_or_else(|| Self::api_err(ErrorCode::NotFound, None))?;
        if !s.stopped || stop {
            s.counts = (s.counts.0.max(counts.0), s.counts.1.max(counts.1));
        }
        let stopped_now = stop && !s.stopped;
        s.stopped |= stop;
        Ok((status, s.counts, stopped_now))
    }
}

impl CoreApi for FakeCore {
    async fn start_session(
        &self,
        req: StartSessionRequest,
    ) -> Result<StartSessionResponse, ApiError> {
        self.gate().await;
        let mut st = self.state.lock().expect("lock");
        let conn = req.connection_id.clone().unwrap_or_default();
        st.calls.push(Call::Start(conn.clone()));
        if st.down {
            return Err(Self::api_err(ErrorCode::Unavailable, None));
        }
        let status = st.status;
        let resp = |id: &str, counts: (u64, u64), status| StartSessionResponse {
            session_id: SessionId(id.to_string()),
            channel_id: "ch".into(),
            status,
            speed: SpeedLimits::default(),
            bytes_in: counts.0,
            bytes_out: counts.1,
            remaining_bytes: None,
        };
        if let Some(s) = st.sessions.iter().find(|s| s.connection == conn) {
            return Ok(resp(&s.id, s.counts, status));
        }
        if !status.admits_login() {
            return Err(Self::api_err(ErrorCode::ChannelInactive, Some(status)));
        }
        for s in st.sessions.iter_mut() {
            s.stopped = true;
        }
        let id = format!("s{}", st.sessions.len() + 1);
        st.sessions.push(Sess {
            id: id.clone(),
            connection: conn,
            counts: (0, 0),
            stopped: false,
        });
        if status == ServiceStatus::Activating {
            st.status = ServiceStatus::Active;
        }
        Ok(resp(&id, (0, 0), st.status))
    }

    async fn update_session(
        &self,
        req: UpdateSessionRequest,
    ) -> Result<UpdateSessionResponse, ApiError> {
        self.gate().await;
        let (status, counts, _) =
            self.usage(&req.session_id, (req.bytes_in, req.bytes_out), false)?;
        Ok(UpdateSessionResponse {
            session_id: req.session_id,
            status,
            bytes_in: counts.0,
            bytes_out: counts.1,
            channel_bytes: counts.0 + counts.1,
            units_used: 0,
            remaining_bytes: None,
            closed: false,
        })
    }

    async fn stop_session(&self, req: StopSessionRequest) -> Result<StopSessionResponse, ApiError> {
        self.gate().await;
        let (status, counts, stopped) =
            self.usage(&req.session_id, (req.bytes_in, req.bytes_out), true)?;
        Ok(StopSessionResponse {
            session_id: req.session_id,
            status,
            bytes_in: counts.0,
            bytes_out: counts.1,
            channel_bytes: counts.0 + counts.1,
            units_used: 0,
            stopped,
        })
    }
}

/// A unique temporary state file path for one test.
pub(super) fn state_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("state.json");
    (dir, p)
}
