//! The VPN end user's commands (issue 16, item 1): `up AGENT_URL` — from an agent's address
//! to a protected connection in one command — and `ls`, `down`.
//!
//! `up`: the client core (reused at `--core-url`, else started: [`core`]); the agent's
//! offerings fetched and verified by that core (FetchOfferings); one chosen (`--offering`,
//! `--max-price`, `--country`, or a numbered table on a terminal; else the cheapest that
//! matches); a channel bought with a deposit the user confirms (`--deposit`, `--yes`;
//! AcceptOffering) — or a channel of that offering bought before and still usable; then
//! `connect::run` as it is, watched from outside ([`live`]) with a status line until it
//! ends (Ctrl-C, SIGTERM, `down`, or the service ending). A core `up` started is stopped
//! after the connection's final report.
//!
//! Output ([`ui`]): spinners and a live line on a terminal, plain lines otherwise, JSON
//! events on stdout with `--json`. Exit codes: [`UpError::exit_code`] and
//! `connect::Outcome::exit_code` (see the README of this crate).
//!
//! | module | holds |
//! |---|---|
//! | `args` | the command lines |
//! | `agent_url` | the agent's market URL as typed → the URL the core calls (one place) |
//! | `core` | finding or starting the user's client core, its token |
//! | `offers` | filters, order, the table, deposits, PRIX (pure) |
//! | `ui` | spinners / plain lines / JSON events, prompts, the log writer |
//! | `live` | the status line of a running connection |
//! | `buy` | choosing and buying (or reusing) a channel |
//! | `ls`, `down` | the other two commands |

mod agent_url;
pub mod args;
mod buy;
pub mod core;
mod down;
pub mod live;
mod ls;
pub mod offers;
pub mod ui;

use std::error::Error as _;
use std::time::Duration;

use serde_json::json;
use service_api::{ApiError, Client, ClientKey};
use tokio_util::sync::CancellationToken;

pub use agent_url::{AgentUrl, AgentUrlError, DEFAULT_MARKET_PORT};
pub use args::{DownArgs, LsArgs, UpArgs, UserCoreArgs};
pub use down::run_down;
pub use ls::run_ls;

use self::core::{CoreHandle, CoreSpec};
use crate::cli::{load_file_config, resolve_connect, resolve_core_url, resolve_token, CliError};
use crate::connect::{self, ConnectError, Outcome};
use crate::runtime;
use crate::state;
use live::{channel_of, run_bytes, status_line, with_channel, View, Watcher, REFRESH};
use offers::{prix, PickError};
use ui::{Mode, Ui};

/// Exit code: nothing matched (no offering, no such channel, nothing running to stop).
pub const EXIT_NOTHING: u8 = 6;
/// Exit code: the user declined the deposit at the prompt.
pub const EXIT_DECLINED: u8 = 7;
/// Timeout of one call to the client core (FetchOfferings and AcceptOffering wait for the
/// agent: the core bounds those by 8 s).
const API_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    AgentUrl(#[from] AgentUrlError),
    #[error(transparent)]
    Pick(#[from] PickError),
    #[error(transparent)]
    Core(#[from] core::CoreError),
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: ApiError,
    },
    #[error("{0}")]
    Nothing(String),
    #[error("not confirmed: nothing was bought")]
    Declined,
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{0}")]
    Settings(#[source] Box<CliError>),
    #[error("could not install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error(
        "{client_key} (pid {pid}) is already connected: `adapter-client down {client_key}` first"
    )]
    AlreadyRunning { client_key: String, pid: u32 },
    #[error("the connection task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    #[error("could not stop {client_key} (pid {pid}): {source}")]
    Signal {
        client_key: String,
        pid: i32,
        #[source]
        source: nix::Error,
    },
    #[error("{client_key} (pid {pid}) did not stop within {secs} s")]
    StopTimeout {
        client_key: String,
        pid: i32,
        secs: u64,
    },
}

impl UpError {
    /// 2 usage, 6 nothing matched, 7 declined, 1 anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) | Self::AgentUrl(_) | Self::Pick(_) => 2,
            Self::Core(core::CoreError::NoToken { .. }) => 2,
            Self::Settings(e) => e.exit_code(),
            Self::Nothing(_) => EXIT_NOTHING,
            Self::Declined => EXIT_DECLINED,
            _ => 1,
        }
    }
}

impl From<CliError> for UpError {
    fn from(e: CliError) -> Self {
        UpError::Settings(Box::new(e))
    }
}

fn api_err(what: impl Into<String>) -> impl FnOnce(ApiError) -> UpError {
    let what = what.into();
    move |source| UpError::Api { what, source }
}

/// An error with its sources, for the JSON `error` event.
fn chain(e: &UpError) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        let t = x.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = x.source();
    }
    s
}

/// Runs `up` until the connection ends; the process exit code.
pub async fn run_up(a: UpArgs) -> Result<u8, UpError> {
    let mut ui = Ui::new(Mode::detect(a.user.json));
    let r = up(&a, &mut ui).await;
    if let Err(e) = &r {
        ui.fail("up failed");
        ui.event(json!({"event": "error", "exitCode": e.exit_code(), "message": chain(e)}));
    }
    r
}

async fn up(a: &UpArgs, ui: &mut Ui) -> Result<u8, UpError> {
    let cancel = CancellationToken::new();
    connect::cancel_on_signals(cancel.clone()).map_err(UpError::Signals)?;
    let file = load_file_config(a.connect.core.config.as_deref())?;
    let agent = a.agent_url.as_deref().map(AgentUrl::parse).transpose()?;
    let known_key = a
        .connect
        .core
        .client_key
        .clone()
        .or(file.client_key.clone());
    if agent.is_none() && known_key.is_none() {
        return Err(UpError::Usage(
            "give the agent's market URL (adapter-client up http://HOST:PORT), or --client-key \
             to connect a channel bought before"
                .into(),
        ));
    }
    let spec = CoreSpec {
        url: resolve_core_url(a.connect.core.core_url.as_deref(), &file),
        token: resolve_token(
            a.connect.core.token.as_ref(),
            a.connect.core.token_file.as_deref(),
            &file,
        )?,
        state_dir: a
            .user
            .state_dir
            .clone()
            .unwrap_or_else(core::default_state_dir),
        core_bin: a.user.core_bin.clone(),
        module_dir: a.user.module_dir.clone(),
        may_start: true,
    };
    ui.begin(&format!("client core at {}", spec.url));
    let handle = tokio::select! {
        r = core::ensure(&spec) => r?,
        () = cancel.cancelled() => return Ok(0),
    };
    let Some(mut handle) = handle else {
        return Err(UpError::Usage("no client core".into()));
    };
    match &handle.started {
        Some(_) => ui.done(&format!(
            "client core started at {} (its files: {})",
            handle.url,
            spec.state_dir.display()
        )),
        None => ui.done(&format!("client core at {} answers", handle.url)),
    }
    ui.event(json!({
        "event": "core",
        "url": handle.url,
        "started": handle.started.is_some(),
        "dataDir": handle.started.as_ref().map(|m| m.data_dir.display().to_string()),
    }));
    let r = with_core(a, ui, &cancel, &handle, agent, known_key).await;
    if let Some(m) = handle.started.take() {
        m.stop().await;
    }
    r
}

async fn with_core(
    a: &UpArgs,
    ui: &mut Ui,
    cancel: &CancellationToken,
    handle: &CoreHandle,
    agent: Option<AgentUrl>,
    known_key: Option<String>,
) -> Result<u8, UpError> {
    let api = Client::new(&handle.url, handle.token.clone(), API_TIMEOUT)
        .map_err(api_err("the client core's URL"))?;
    let key = tokio::select! {
        r = buy::channel(a, ui, &api, agent.as_ref(), known_key) => r?,
        () = cancel.cancelled() => return Ok(0),
    };
    // The connection: `connect` with the settings of its flags, for this channel.
    let mut args = a.connect.clone();
    args.core.client_key = Some(key.0.clone());
    args.core.core_url = Some(handle.url.clone());
    if args.core.token.is_none() && args.core.token_file.is_none() {
        args.core.token = Some(handle.token.clone());
    }
    if let Some(run) = &a.user.run_dir {
        let name = runtime::safe_name(&key.0);
        args.runtime_dir.get_or_insert_with(|| run.join(&name));
        args.state_file
            .get_or_insert_with(|| run.join(format!("{name}.state.json")));
    }
    let settings = resolve_connect(&args)?;
    if let Ok(st) = state::read(&settings.state_file) {
        if !st.phase.is_final() && down::alive(st.pid) && st.pid != std::process::id() {
            return Err(UpError::AlreadyRunning {
                client_key: key.0,
                pid: st.pid,
            });
        }
    }
    ui.begin("starting the connection");
    ui.event(json!({"event": "connecting", "clientKey": key}));
    let mut task = tokio::spawn(connect::run(settings.clone(), cancel.clone()));
    let mut w = Watcher::new(
        &api,
        &key,
        &settings.state_file,
        &settings.tun_dev,
        Duration::from_secs(a.status_interval.max(1)),
    );
    let ended = loop {
        tokio::select! {
            r = &mut task => break r,
            () = tokio::time::sleep(REFRESH) => w.refresh(ui).await,
        }
    };
    ui.end_live();
    let outcome = match ended.map_err(UpError::Task)? {
        Ok(o) => o,
        Err(e) => return Err(e.into()),
    };
    report_end(
        ui,
        &api,
        &key,
        &settings.state_file,
        &outcome,
        w.view.clone(),
    )
    .await;
    Ok(outcome.exit_code())
}

/// The final report: why it ended, the run's counts, the channel's units and money.
async fn report_end(
    ui: &mut Ui,
    api: &Client,
    key: &ClientKey,
    state_file: &std::path::Path,
    outcome: &Outcome,
    mut view: View,
) {
    let st = state::read(state_file).ok();
    if let Some(st) = &st {
        let (bin, bout) = run_bytes(st);
        view.bytes_in = bin;
        view.bytes_out = bout;
        view.phase = st.phase.as_str().to_string();
    }
    view.down_bps = 0;
    view.up_bps = 0;
    view.reason = Some(outcome.reason());
    if let Some(ch) = channel_of(api, key).await {
        with_channel(&mut view, &ch);
    }
    let connections = st.as_ref().map_or(0, |s| s.connections);
    let mut text = outcome.phase().as_str().to_string();
    if *outcome != Outcome::Stopped {
        text.push_str(&format!(" ({})", outcome.reason()));
    }
    text.push_str(&format!(
        ": \u{2193} {} \u{2191} {}",
        state::human_bytes(view.bytes_in),
        state::human_bytes(view.bytes_out),
    ));
    if connections != 1 {
        text.push_str(&format!(" in {connections} connections"));
    }
    if let (Some(u), Some(m)) = (view.units_used, view.max_units) {
        text.push_str(&format!(
            "; channel {u}/{m} {}",
            view.unit_name.as_deref().unwrap_or("units")
        ));
    }
    if let Some(used) = view.amount_used {
        text.push_str(&format!(", spent {}", prix(used)));
    }
    if let Some(paid) = view.amount_paid {
        text.push_str(&format!(" (paid {})", prix(paid)));
    }
    match outcome.exit_code() {
        0 => ui.done(&text),
        _ => ui.fail(&text),
    }
    if ui.mode() == Mode::Plain {
        tracing::debug!("{}", status_line(&view));
    }
    ui.event(json!({
        "event": "stopped",
        "exitCode": outcome.exit_code(),
        "clientKey": key,
        "connections": connections,
        "status": view,
    }));
}
