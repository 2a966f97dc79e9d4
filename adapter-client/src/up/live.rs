//! The live view of a running connection: `connect::run` works in a task of its own; this
//! watches it from outside — its state file (phase, byte counts), the tun device's
//! counters (speed) and the client core's ListChannels (units, money) — and shows a status
//! line until the connection ends. It never changes the connection.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use service_api::{Client, ClientChannel, ClientKey, ServiceStatus};

use super::offers::prix;
use super::ui::{Mode, Ui};
use crate::state::{self, human_bytes, Phase, Status};

/// How often the view is refreshed.
pub const REFRESH: Duration = Duration::from_secs(1);
/// How often the core is asked for the channel's units and money.
const CORE_EVERY: Duration = Duration::from_secs(2);

/// What the status line and the `status` event show.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct View {
    pub phase: String,
    /// The channel's status at the core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ServiceStatus>,
    /// Bytes of this run (every session), as the adapter counted them.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Bits per second through the tunnel (download = received).
    pub down_bps: u64,
    pub up_bps: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units_used: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_units: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_name: Option<String>,
    /// The cost of the units used (base units).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_used: Option<u64>,
    /// What the agent acknowledged as paid (base units).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_paid: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpn_address: Option<String>,
    pub elapsed_secs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `1:02:03` / `02:03`.
pub fn clock(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m:02}:{s:02}")
    }
}

/// Bits per second for people (`7.9 Mbit/s`).
pub fn human_rate(bps: u64) -> String {
    match bps {
        0..=999 => format!("{bps} bit/s"),
        1_000..=999_999 => format!("{}.{} kbit/s", bps / 1_000, (bps % 1_000) / 100),
        1_000_000..=999_999_999 => {
            format!("{}.{} Mbit/s", bps / 1_000_000, (bps % 1_000_000) / 100_000)
        }
        _ => format!(
            "{}.{} Gbit/s",
            bps / 1_000_000_000,
            (bps % 1_000_000_000) / 100_000_000
        ),
    }
}

/// The status line: `connected  ↓ 7.9 Mbit/s  ↑ 3.9 Mbit/s  12/54 MB  spent 0.012 PRIX  00:42`.
pub fn status_line(v: &View) -> String {
    let mut s = format!(
        "{}  \u{2193} {}  \u{2191} {}",
        v.phase,
        human_rate(v.down_bps),
        human_rate(v.up_bps)
    );
    match (v.units_used, v.max_units) {
        (Some(u), Some(m)) => s.push_str(&format!(
            "  {u}/{m} {}",
            v.unit_name.as_deref().unwrap_or("units")
        )),
        _ => s.push_str(&format!(
            "  {} in / {} out",
            human_bytes(v.bytes_in),
            human_bytes(v.bytes_out)
        )),
    }
    if let Some(a) = v.amount_used {
        s.push_str(&format!("  spent {}", prix(a)));
    }
    s.push_str(&format!("  {}", clock(v.elapsed_secs)));
    if let (Some(r), false) = (&v.reason, v.phase == Phase::Connected.as_str()) {
        s.push_str(&format!("  ({r})"));
    }
    s
}

/// The run's byte counts from a state file (ended sessions + the open one).
pub fn run_bytes(s: &Status) -> (u64, u64) {
    if s.phase == Phase::Connected {
        (
            s.total_bytes_in.saturating_add(s.bytes_in),
            s.total_bytes_out.saturating_add(s.bytes_out),
        )
    } else {
        (s.total_bytes_in, s.total_bytes_out)
    }
}

/// (received, sent) bytes of a network device, from sysfs.
fn device_bytes(dev: &str) -> Option<(u64, u64)> {
    let read = |what: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/sys/class/net/{dev}/statistics/{what}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some((read("rx_bytes")?, read("tx_bytes")?))
}

/// The channel of `key` at the core (`None` when the core does not answer in time).
pub async fn channel_of(api: &Client, key: &ClientKey) -> Option<ClientChannel> {
    let list = tokio::time::timeout(CORE_EVERY, api.list_channels())
        .await
        .ok()?
        .ok()?;
    list.channels.into_iter().find(|c| c.client_key == *key)
}

/// Fills the core's part of a view.
pub fn with_channel(v: &mut View, ch: &ClientChannel) {
    v.status = Some(ch.status);
    v.units_used = Some(ch.units_used);
    v.amount_paid = Some(ch.amount_paid);
    v.amount_used = ch.amount_used;
    if let Some(o) = &ch.offering {
        v.max_units = Some(o.max_units);
        v.unit_name = Some(o.unit_name.clone());
    }
}

/// Watches one connection; see the module doc.
pub struct Watcher<'a> {
    pub api: &'a Client,
    pub client_key: &'a ClientKey,
    pub state_file: &'a Path,
    pub tun_dev: &'a str,
    /// Between `status` events (JSON) or status lines (plain).
    pub every: Duration,
    started: Instant,
    last_phase: Option<Phase>,
    last_bytes: Option<(Instant, u64, u64)>,
    last_core: Option<Instant>,
    last_report: Option<Instant>,
    pub view: View,
}

impl<'a> Watcher<'a> {
    pub fn new(
        api: &'a Client,
        client_key: &'a ClientKey,
        state_file: &'a Path,
        tun_dev: &'a str,
        every: Duration,
    ) -> Watcher<'a> {
        Watcher {
            api,
            client_key,
            state_file,
            tun_dev,
            every,
            started: Instant::now(),
            last_phase: None,
            last_bytes: None,
            last_core: None,
            last_report: None,
            view: View::default(),
        }
    }

    /// One refresh: reads everything, tells the user about phase changes, redraws or
    /// reports the status.
    pub async fn refresh(&mut self, ui: &mut Ui) {
        let now = Instant::now();
        let st = state::read(self.state_file)
            .ok()
            .filter(|s| s.pid == std::process::id());
        if let Some(st) = &st {
            let (bin, bout) = run_bytes(st);
            self.view.phase = st.phase.as_str().to_string();
            self.view.bytes_in = bin;
            self.view.bytes_out = bout;
            self.view.vpn_address = st.vpn_address.clone();
            self.view.reason = st.reason.clone();
            if self.last_phase != Some(st.phase) {
                self.last_phase = Some(st.phase);
                self.phase_changed(ui, st);
            }
        }
        // Speed: the tun device's counters when it is there, else the adapter's counts.
        let counters = device_bytes(self.tun_dev).or(st.as_ref().map(run_bytes));
        if let Some((rx, tx)) = counters {
            if let Some((t0, rx0, tx0)) = self.last_bytes {
                let ms = now.duration_since(t0).as_millis().max(1) as u64;
                self.view.down_bps = rx.saturating_sub(rx0).saturating_mul(8_000) / ms;
                self.view.up_bps = tx.saturating_sub(tx0).saturating_mul(8_000) / ms;
            }
            self.last_bytes = Some((now, rx, tx));
        }
        if self
            .last_core
            .is_none_or(|t| now.duration_since(t) >= CORE_EVERY)
        {
            self.last_core = Some(now);
            if let Some(ch) = channel_of(self.api, self.client_key).await {
                with_channel(&mut self.view, &ch);
            }
        }
        self.view.elapsed_secs = self.started.elapsed().as_secs();
        if self.view.phase.is_empty() {
            return;
        }
        match ui.mode() {
            Mode::Terminal => ui.live(&status_line(&self.view)),
            mode => {
                if self
                    .last_report
                    .is_none_or(|t| now.duration_since(t) >= self.every)
                {
                    self.last_report = Some(now);
                    if mode == Mode::Json {
                        ui.event(json!({"event": "status", "status": &self.view}));
                    } else {
                        ui.live(&status_line(&self.view));
                    }
                }
            }
        }
    }

    fn phase_changed(&self, ui: &mut Ui, st: &Status) {
        let reason = st.reason.clone().unwrap_or_default();
        match st.phase {
            Phase::Connected => {
                let text = format!(
                    "connected: {} via {} (tun {})",
                    st.vpn_address.as_deref().unwrap_or("?"),
                    st.endpoint,
                    st.tun_dev
                );
                ui.done(&text);
                ui.event(json!({
                    "event": "connected",
                    "vpnAddress": st.vpn_address,
                    "endpoint": st.endpoint,
                    "tunDev": st.tun_dev,
                    "connections": st.connections,
                }));
            }
            Phase::Starting | Phase::Connecting => {
                ui.begin(&format!("connecting to {}", st.endpoint));
                ui.event(
                    json!({"event": "phase", "phase": st.phase.as_str(), "endpoint": st.endpoint}),
                );
            }
            other => {
                if matches!(other, Phase::Reconnecting | Phase::Suspended) {
                    ui.note(&format!("{}: {reason}", other.as_str()));
                }
                ui.event(json!({"event": "phase", "phase": other.as_str(), "reason": st.reason}));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_says_it_all() {
        let mut v = View {
            phase: "connected".into(),
            down_bps: 7_912_000,
            up_bps: 3_950_000,
            units_used: Some(12),
            max_units: Some(54),
            unit_name: Some("MB".into()),
            amount_used: Some(1_200_000),
            elapsed_secs: 83,
            ..View::default()
        };
        assert_eq!(
            status_line(&v),
            "connected  \u{2193} 7.9 Mbit/s  \u{2191} 3.9 Mbit/s  12/54 MB  spent 0.012 PRIX  01:23"
        );
        v.phase = "reconnecting".into();
        v.reason = Some("openvpn exited".into());
        v.units_used = None;
        v.amount_used = None;
        v.bytes_in = 2_500_000;
        v.down_bps = 0;
        v.up_bps = 999;
        v.elapsed_secs = 3_723;
        assert_eq!(
            status_line(&v),
            "reconnecting  \u{2193} 0 bit/s  \u{2191} 999 bit/s  2.50 MB in / 0 B out  1:02:03  (openvpn exited)"
        );
    }

    #[test]
    fn rates_and_clocks() {
        assert_eq!(human_rate(1_500), "1.5 kbit/s");
        assert_eq!(human_rate(2_000_000_000), "2.0 Gbit/s");
        assert_eq!(clock(0), "00:00");
        assert_eq!(clock(59 * 60 + 59), "59:59");
    }
}
