//! Managing `/etc/resolv.conf` when systemd-resolved does not run: the tunnel's servers
//! are written into the file for the tunnel's lifetime, and the original text is put back
//! exactly afterwards.
//!
//! The file is written **in place** (truncate and write through the path), never replaced
//! by a rename: inside `ip netns exec NS` the file is a bind mount of
//! `/etc/netns/NS/resolv.conf` and `rename()` onto a mount point fails with `EBUSY`; in
//! place also keeps its owner, mode and any symlink that leads to it.
//!
//! Restoring is a pure decision ([`restore_action`]) on the current text, the original and
//! what the adapter wrote: only the adapter's own text (or a prefix of it, when a killed
//! adapter was cut off in the middle of writing) is replaced by the original; a file that
//! someone else has changed since is left alone.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::push::DnsConfig;

/// The file managed by default.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// Largest resolv.conf read (it is a few lines; anything larger is not touched).
pub const MAX_RESOLV_CONF: u64 = 64 * 1024;
/// glibc reads at most this many `nameserver` lines.
pub const MAXNS: usize = 3;
/// The first line of every file the adapter writes.
pub const HEADER: &str = "# Written by adapter-client for the VPN tunnel";

#[derive(Debug, thiserror::Error)]
pub enum ResolvConfError {
    #[error("could not read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_RESOLV_CONF} bytes; not touching it")]
    TooLarge { path: PathBuf },
    #[error("{path} is not UTF-8 text; not touching it")]
    NotText { path: PathBuf },
    #[error("could not write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The text written for `cfg`: the tunnel's servers (at most [`MAXNS`], glibc ignores
/// more) and search domains; the original's `options` lines are kept (they tune the
/// resolver, they name no server).
pub fn render(original: Option<&str>, cfg: &DnsConfig) -> String {
    let mut t = String::new();
    t.push_str(HEADER);
    t.push_str(" (the original is restored when it stops).\n");
    for ip in cfg.servers.iter().take(MAXNS) {
        t.push_str(&format!("nameserver {ip}\n"));
    }
    if !cfg.search.is_empty() {
        t.push_str(&format!("search {}\n", cfg.search.join(" ")));
    }
    for line in original.unwrap_or_default().lines() {
        let l = line.trim_start();
        if l.starts_with("options") && l.split_whitespace().next() == Some("options") {
            t.push_str(l);
            t.push('\n');
        }
    }
    t
}

/// What restoring does to the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreAction {
    /// Write the original text back.
    Write(String),
    /// The file did not exist before: remove it.
    Remove,
    /// It already is the original: nothing to do.
    Nothing,
    /// Someone else changed it since the adapter wrote it: leave it.
    ChangedByOthers,
}

/// Decides how to restore, from the current text (`None`: the file is missing), the
/// original (`None`: it was missing) and the adapter's text.
pub fn restore_action(
    current: Option<&str>,
    original: Option<&str>,
    written: &str,
) -> RestoreAction {
    let ours = |c: &str| c == written || (written.starts_with(c) && c.len() < written.len());
    match (current, original) {
        (Some(c), Some(o)) if c == o => RestoreAction::Nothing,
        (None, None) => RestoreAction::Nothing,
        // Empty or cut short: the adapter was killed while writing; still its own.
        (Some(c), Some(o)) if ours(c) => RestoreAction::Write(o.to_string()),
        (Some(c), None) if ours(c) => RestoreAction::Remove,
        // Gone after the adapter wrote it: put the original back.
        (None, Some(o)) => RestoreAction::Write(o.to_string()),
        _ => RestoreAction::ChangedByOthers,
    }
}

/// Reads the file; `None` when it does not exist.
pub fn read(path: &Path) -> Result<Option<String>, ResolvConfError> {
    let rerr = |e| ResolvConfError::Read {
        path: path.to_path_buf(),
        source: e,
    };
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(rerr(e)),
    };
    let mut bytes = Vec::new();
    f.take(MAX_RESOLV_CONF + 1)
        .read_to_end(&mut bytes)
        .map_err(rerr)?;
    if bytes.len() as u64 > MAX_RESOLV_CONF {
        return Err(ResolvConfError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| ResolvConfError::NotText {
            path: path.to_path_buf(),
        })
}

/// Writes `text` into the file in place (created 0644 when missing), and syncs it.
pub fn write_in_place(path: &Path, text: &str) -> Result<(), ResolvConfError> {
    use std::os::unix::fs::OpenOptionsExt;
    let werr = |e| ResolvConfError::Write {
        path: path.to_path_buf(),
        source: e,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)
        .map_err(werr)?;
    f.write_all(text.as_bytes()).map_err(werr)?;
    f.sync_all().map_err(werr)
}

/// Carries out a [`RestoreAction`].
pub fn apply_restore(path: &Path, action: &RestoreAction) -> Result<(), ResolvConfError> {
    match action {
        RestoreAction::Write(text) => write_in_place(path, text),
        RestoreAction::Remove => match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ResolvConfError::Write {
                path: path.to_path_buf(),
                source: e,
            }),
        },
        RestoreAction::Nothing | RestoreAction::ChangedByOthers => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(servers: &[&str], search: &[&str]) -> DnsConfig {
        DnsConfig {
            servers: servers.iter().map(|s| s.parse().expect("ip")).collect(),
            search: search.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn renders_servers_search_and_keeps_options() {
        let original = "# host\nnameserver 192.0.2.53\nsearch home.example\noptions edns0 trust-ad\n  options rotate\noptionsX nope\n";
        let t = render(
            Some(original),
            &cfg(
                &["10.8.0.1", "fd00::1", "10.8.0.2", "10.8.0.3"],
                &["vpn.example", "corp.example"],
            ),
        );
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with(HEADER));
        assert_eq!(
            &lines[1..],
            &[
                "nameserver 10.8.0.1",
                "nameserver fd00::1",
                "nameserver 10.8.0.2",
                "search vpn.example corp.example",
                "options edns0 trust-ad",
                "options rotate",
            ]
        );
        assert!(!t.contains("192.0.2.53"));
        let t = render(None, &cfg(&["10.8.0.1"], &[]));
        assert_eq!(
            t.lines().skip(1).collect::<Vec<_>>(),
            ["nameserver 10.8.0.1"]
        );
    }

    #[test]
    fn restore_decisions() {
        let w = "# ours\nnameserver 10.8.0.1\n";
        let o = "nameserver 192.0.2.53\n";
        let cases: &[(Option<&str>, Option<&str>, RestoreAction)] = &[
            (Some(w), Some(o), RestoreAction::Write(o.into())),
            // Killed in the middle of writing: empty or a prefix of ours.
            (Some(""), Some(o), RestoreAction::Write(o.into())),
            (
                Some("# ours\nname"),
                Some(o),
                RestoreAction::Write(o.into()),
            ),
            (Some(o), Some(o), RestoreAction::Nothing),
            (
                Some("nameserver 198.51.100.1\n"),
                Some(o),
                RestoreAction::ChangedByOthers,
            ),
            (Some(w), None, RestoreAction::Remove),
            (None, None, RestoreAction::Nothing),
            (None, Some(o), RestoreAction::Write(o.into())),
            (Some("other\n"), None, RestoreAction::ChangedByOthers),
        ];
        for (current, original, want) in cases {
            assert_eq!(
                restore_action(*current, *original, w),
                *want,
                "{current:?} {original:?}"
            );
        }
    }

    #[test]
    fn writes_in_place_and_restores_exactly() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("resolv.conf");
        let original = "nameserver 192.0.2.53\noptions edns0\n";
        fs::write(&p, original).expect("write");
        let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).expect("md"));
        let before = ino(&p);
        let cur = read(&p).expect("read");
        let text = render(cur.as_deref(), &cfg(&["10.8.0.1"], &["vpn.example"]));
        write_in_place(&p, &text).expect("apply");
        assert_eq!(ino(&p), before, "written in place, not replaced");
        assert_eq!(read(&p).expect("read").as_deref(), Some(text.as_str()));
        let action = restore_action(read(&p).expect("read").as_deref(), Some(original), &text);
        apply_restore(&p, &action).expect("restore");
        assert_eq!(fs::read_to_string(&p).expect("read"), original);
        assert_eq!(ino(&p), before);
        // A missing file is created, then removed again.
        let q = dir.path().join("missing.conf");
        assert_eq!(read(&q).expect("read"), None);
        write_in_place(&q, &text).expect("create");
        let action = restore_action(read(&q).expect("read").as_deref(), None, &text);
        assert_eq!(action, RestoreAction::Remove);
        apply_restore(&q, &action).expect("remove");
        assert!(!q.exists());
        // Too large or not text: refused.
        fs::write(&q, vec![b'x'; MAX_RESOLV_CONF as usize + 1]).expect("big");
        assert!(matches!(read(&q), Err(ResolvConfError::TooLarge { .. })));
        fs::write(&q, [0xff, 0xfe]).expect("bin");
        assert!(matches!(read(&q), Err(ResolvConfError::NotText { .. })));
    }
}
