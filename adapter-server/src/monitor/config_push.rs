//! Pushing the server config to the core (SetProductConfig) at start and whenever the
//! config file or a file it names changes (watched with `notify`).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{error, info, warn, Instrument};

use super::core_calls::{is_transient, BoundedCore};
use super::event::Ev;
use super::MonitorError;
use crate::push_config;

/// After a change is seen, wait this long for more (an editor writes several times).
const SETTLE: Duration = Duration::from_millis(300);
/// Retry of a push the core did not answer.
const RETRY: Duration = Duration::from_secs(10);

/// The push schedule and the file watcher.
pub struct ConfigPush {
    path: Option<PathBuf>,
    endpoint: Option<String>,
    due: Option<Instant>,
    in_flight: bool,
    watched: HashSet<PathBuf>,
    watcher: Option<notify::RecommendedWatcher>,
}

impl ConfigPush {
    /// Pushes `path` (if any) at once and then on changes.
    pub fn new(path: Option<PathBuf>, endpoint: Option<String>, now: Instant) -> Self {
        Self {
            due: path.as_ref().map(|_| now),
            path,
            endpoint,
            in_flight: false,
            watched: HashSet::new(),
            watcher: None,
        }
    }

    /// A watched file changed.
    pub fn changed(&mut self, now: Instant) {
        self.due = Some(now + SETTLE);
    }

    /// Starts the push when one is due and none is running.
    pub fn maybe_push(&mut self, core: &BoundedCore, tx: &mpsc::Sender<Ev>, now: Instant) {
        let Some(path) = self.path.clone() else {
            return;
        };
        match self.due {
            Some(t) if t <= now && !self.in_flight => {}
            _ => return,
        }
        self.due = None;
        self.in_flight = true;
        let endpoint = self.endpoint.clone();
        let (core, tx) = (core.clone(), tx.clone());
        tokio::spawn(
            async move {
                let loaded = tokio::task::spawn_blocking(move || {
                    push_config::load(&path, endpoint.as_deref())
                })
                .await;
                let (result, transient) = match loaded {
                    Err(e) => (Err(format!("config loader panicked: {e}")), false),
                    Ok(Err(e)) => (Err(format!("{e:#}")), false),
                    Ok(Ok(l)) => match push_config::push(&core, l.config).await {
                        Ok(r) => (Ok((r.changed, l.files)), false),
                        Err(push_config::PushConfigError::Core(e)) => {
                            let t = is_transient(&e);
                            (Err(format!("SetProductConfig: {e}")), t)
                        }
                        Err(e) => (Err(format!("{e:#}")), false),
                    },
                };
                let _ = tx.send(Ev::Pushed { result, transient }).await;
            }
            .in_current_span(),
        );
    }

    /// The push's result: watch the files it read, or retry a transient failure.
    pub fn on_pushed(
        &mut self,
        result: Result<(bool, Vec<PathBuf>), String>,
        transient: bool,
        tx: &mpsc::Sender<Ev>,
        now: Instant,
    ) {
        self.in_flight = false;
        match result {
            Ok((changed, files)) => {
                info!(changed, "product config pushed");
                self.watch(files, tx);
            }
            Err(e) => {
                error!("pushing the product config failed: {e}");
                if transient {
                    self.due = Some(now + RETRY);
                }
            }
        }
    }

    fn watch(&mut self, files: Vec<PathBuf>, tx: &mpsc::Sender<Ev>) {
        use notify::Watcher;
        // Absolute, symlink-free paths: notify reports events under the watched directory.
        let want: HashSet<PathBuf> = files
            .into_iter()
            .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
            .collect();
        if want == self.watched && self.watcher.is_some() {
            return;
        }
        let targets = Arc::new(want.clone());
        let tx = tx.clone();
        let t2 = targets.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                let relevant = matches!(
                    ev.kind,
                    notify::EventKind::Create(_)
                        | notify::EventKind::Modify(_)
                        | notify::EventKind::Remove(_)
                ) && ev.paths.iter().any(|p| t2.contains(p));
                if relevant {
                    let _ = tx.try_send(Ev::ConfigChanged);
                }
            }
        });
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                error!("{}", MonitorError::Watch(e));
                return;
            }
        };
        // Watch the directories: editors and `mv` replace files.
        let dirs: HashSet<PathBuf> = targets
            .iter()
            .filter_map(|p| {
                p.parent().map(|d| {
                    if d.as_os_str().is_empty() {
                        PathBuf::from(".")
                    } else {
                        d.to_path_buf()
                    }
                })
            })
            .collect();
        for d in dirs {
            if let Err(e) = watcher.watch(&d, notify::RecursiveMode::NonRecursive) {
                warn!(dir = %d.display(), "cannot watch: {e}");
            }
        }
        self.watcher = Some(watcher);
        self.watched = want;
    }
}
