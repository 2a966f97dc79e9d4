//! The small JSON state file `connect` keeps up to date (atomic rename) and `status` reads.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Largest state file `status` reads.
pub const MAX_STATE_FILE: u64 = 64 * 1024;

/// The connection phase shown to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Starting,
    Connecting,
    Connected,
    Reconnecting,
    Stopping,
    /// Stopped by the user (signal).
    Stopped,
    /// The core answered suspending/suspended: openvpn is stopped and the adapter waits
    /// for a payment (final only after `--max-suspend-wait`).
    Suspended,
    /// Stopped for good: the core answered terminating/terminated.
    Terminated,
    /// Stopped for good: the server halted the client.
    Halted,
    /// Stopped for good: the server refused the credentials.
    AuthFailed,
    /// Stopped on an error.
    Failed,
}

impl Phase {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Stopped
                | Self::Suspended
                | Self::Terminated
                | Self::Halted
                | Self::AuthFailed
                | Self::Failed
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Reconnecting => "reconnecting",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Suspended => "suspended",
            Self::Terminated => "terminated",
            Self::Halted => "halted",
            Self::AuthFailed => "auth_failed",
            Self::Failed => "failed",
        }
    }
}

/// Contents of the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub client_key: String,
    pub phase: Phase,
    /// Why the last drop / stop happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// pid of the adapter.
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openvpn_pid: Option<u32>,
    /// OpenVPN's own last state (`WAIT`, `AUTH`, `CONNECTED`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openvpn_state: Option<String>,
    /// The states of the current openvpn process as the adapter saw them, oldest first (at
    /// most 16): a short-lived state stays visible here after the next one replaced it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub openvpn_states: Vec<String>,
    pub endpoint: String,
    pub tun_dev: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpn_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Unix time the current connection came up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_since: Option<u64>,
    /// Bytes of the current (or last) session.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Bytes of all sessions of this run.
    pub total_bytes_in: u64,
    pub total_bytes_out: u64,
    /// Connections made in this run.
    pub connections: u32,
    pub updated_at: u64,
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("could not write state file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not read state file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {path} is larger than {MAX_STATE_FILE} bytes")]
    TooLarge { path: PathBuf },
    #[error("state file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Writes `status` to `path` atomically (temporary file in the same directory + rename),
/// mode 0644 (it holds no secret).
pub fn write(path: &Path, status: &Status) -> Result<(), StateError> {
    let werr = |e| StateError::Write {
        path: path.to_path_buf(),
        source: e,
    };
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            fs::create_dir_all(parent).map_err(werr)?;
        }
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    let body = serde_json::to_vec_pretty(status).map_err(|e| werr(std::io::Error::other(e)))?;
    let res = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(&body)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.map_err(werr)
}

pub fn read(path: &Path) -> Result<Status, StateError> {
    let rerr = |e| StateError::Read {
        path: path.to_path_buf(),
        source: e,
    };
    let md = fs::metadata(path).map_err(rerr)?;
    if md.len() > MAX_STATE_FILE {
        return Err(StateError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let body = fs::read(path).map_err(rerr)?;
    serde_json::from_slice(&body).map_err(|e| StateError::Parse {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Bytes for display in decimal units (B, kB, MB, GB).
pub fn human_bytes(bytes: u64) -> String {
    match bytes {
        0..=999 => format!("{bytes} B"),
        1_000..=999_999 => format!("{}.{} kB", bytes / 1_000, (bytes % 1_000) / 100),
        1_000_000..=999_999_999 => format!(
            "{}.{:02} MB",
            bytes / 1_000_000,
            (bytes % 1_000_000) / 10_000
        ),
        _ => format!(
            "{}.{:02} GB",
            bytes / 1_000_000_000,
            (bytes % 1_000_000_000) / 10_000_000
        ),
    }
}

/// Human-readable rendering for `adapter-client status`. `alive` = the adapter pid runs.
pub fn describe(s: &Status, alive: bool, now: u64) -> String {
    let mut out = String::new();
    let phase = if !alive && !s.phase.is_final() {
        format!(
            "not running (last known state: {}, adapter pid {} is gone)",
            s.phase.as_str(),
            s.pid
        )
    } else {
        s.phase.as_str().to_string()
    };
    out.push_str(&format!("client key:  {}\n", s.client_key));
    out.push_str(&format!("state:       {phase}\n"));
    if let (Some(o), false) = (&s.openvpn_state, s.phase.is_final()) {
        out.push_str(&format!("openvpn:     {o}\n"));
    }
    if let Some(r) = &s.reason {
        out.push_str(&format!("reason:      {r}\n"));
    }
    out.push_str(&format!("endpoint:    {}\n", s.endpoint));
    out.push_str(&format!("tun device:  {}\n", s.tun_dev));
    if let Some(a) = &s.vpn_address {
        out.push_str(&format!("vpn address: {a}\n"));
    }
    if let Some(since) = s.connected_since {
        out.push_str(&format!(
            "connected:   {} s ago\n",
            now.saturating_sub(since)
        ));
    }
    if let Some(id) = &s.session_id {
        out.push_str(&format!("session:     {id}\n"));
    }
    // The totals hold ended sessions; add the open one.
    let (run_in, run_out) = if s.phase == Phase::Connected {
        (
            s.total_bytes_in.saturating_add(s.bytes_in),
            s.total_bytes_out.saturating_add(s.bytes_out),
        )
    } else {
        (s.total_bytes_in, s.total_bytes_out)
    };
    out.push_str(&format!(
        "traffic:     session down {} / up {}; this run down {} / up {} ({} connection(s))\n",
        human_bytes(s.bytes_in),
        human_bytes(s.bytes_out),
        human_bytes(run_in),
        human_bytes(run_out),
        s.connections
    ));
    out.push_str(&format!(
        "updated:     {} s ago\n",
        now.saturating_sub(s.updated_at)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Status {
        Status {
            client_key: "ck".into(),
            phase: Phase::Connected,
            reason: None,
            pid: 42,
            openvpn_pid: Some(43),
            openvpn_state: Some("CONNECTED".into()),
            openvpn_states: vec!["WAIT".into(), "CONNECTED".into()],
            endpoint: "vpn:1194".into(),
            tun_dev: "tunac42".into(),
            vpn_address: Some("10.8.0.6".into()),
            session_id: Some("s1".into()),
            connected_since: Some(100),
            bytes_in: 2_500_000,
            bytes_out: 10_000,
            total_bytes_in: 1_000_000,
            total_bytes_out: 0,
            connections: 1,
            updated_at: 110,
        }
    }

    #[test]
    fn write_read_roundtrip_atomic() {
        let tmp = tempfile::tempdir().expect("tmp");
        let p = tmp.path().join("sub/ck.state.json");
        write(&p, &sample()).expect("write");
        assert_eq!(read(&p).expect("read"), sample());
        let mut s = sample();
        s.phase = Phase::Terminated;
        s.reason = Some("core answered terminating".into());
        write(&p, &s).expect("rewrite");
        assert_eq!(read(&p).expect("read").phase, Phase::Terminated);
        let leftovers: Vec<_> = fs::read_dir(p.parent().expect("parent"))
            .expect("ls")
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left");
        let json = fs::read_to_string(&p).expect("read");
        assert!(json.contains("\"phase\": \"terminated\""), "{json}");
    }

    #[test]
    fn describe_shows_state_and_traffic() {
        let d = describe(&sample(), true, 130);
        assert!(d.contains("state:       connected\n"), "{d}");
        assert!(d.contains("vpn address: 10.8.0.6"), "{d}");
        assert!(d.contains("connected:   30 s ago"), "{d}");
        assert!(d.contains("session down 2.50 MB / up 10.0 kB"), "{d}");
        assert!(d.contains("this run down 3.50 MB / up 10.0 kB"), "{d}");
        let d = describe(&sample(), false, 130);
        assert!(
            d.contains("not running (last known state: connected"),
            "{d}"
        );
        let mut s = sample();
        s.phase = Phase::Suspended;
        s.reason = Some("core answered suspending".into());
        let d = describe(&s, false, 130);
        assert!(d.contains("state:       suspended\n"), "{d}");
        assert!(d.contains("reason:      core answered suspending"), "{d}");
    }

    #[test]
    fn human_bytes_units() {
        for (b, want) in [
            (0, "0 B"),
            (999, "999 B"),
            (1_000, "1.0 kB"),
            (12_345, "12.3 kB"),
            (2_500_000, "2.50 MB"),
            (7_890_000_000, "7.89 GB"),
        ] {
            assert_eq!(human_bytes(b), want);
        }
    }

    #[test]
    fn bad_files_are_errors() {
        let tmp = tempfile::tempdir().expect("tmp");
        let p = tmp.path().join("s.json");
        fs::write(&p, "{not json").expect("w");
        assert!(matches!(read(&p), Err(StateError::Parse { .. })));
        assert!(matches!(
            read(&tmp.path().join("none")),
            Err(StateError::Read { .. })
        ));
    }
}
