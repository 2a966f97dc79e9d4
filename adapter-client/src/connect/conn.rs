//! The connection state as enums whose variants carry their data, and its transitions as
//! pure methods (time is an argument, nothing is sent or started here):
//! - [`Conn`]: the `openvpn` process — none (maybe a restart due), running (maybe a delayed
//!   hold release due), or asked to exit (SIGKILL due, then given up on);
//! - [`Goal`]: what the actor is after — staying connected, waiting ([`Wait`]: suspended by
//!   the core, or checking a server halt with the core), or stopping with an [`Outcome`].

use std::time::Duration;

use service_api::ServiceStatus;
use tokio::time::Instant;

use super::process::MgmtLink;
use super::Outcome;

/// How long a process gets to go away after SIGKILL before it is given up on.
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(5);

/// How often a suspended adapter logs that it is still waiting.
pub(crate) const SUSPEND_LOG_EVERY: Duration = Duration::from_secs(30);

/// Longest interval between status checks after a server HALT.
pub(crate) const HALT_CHECK_MAX_INTERVAL: Duration = Duration::from_secs(1);

/// Backoff delay before attempt `attempt` (0 = first try, no delay).
pub fn backoff_delay(attempt: u32, initial: Duration, max: Duration) -> Duration {
    if attempt == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1).min(20))
        .unwrap_or(u32::MAX);
    initial.saturating_mul(factor).min(max)
}

/// The text shown while suspended.
pub fn suspended_reason(status: ServiceStatus, what: &str, waited: Duration) -> String {
    format!(
        "service suspended by the agent (the core answered {status} to {what}): payment lag; waiting for payment to resume — {} s",
        waited.as_secs()
    )
}

/// A started `openvpn` process.
pub(crate) struct Running<P> {
    pub(crate) proc: P,
    pub(crate) pid: u32,
    /// Set once its management socket accepted the adapter.
    pub(crate) mgmt: Option<MgmtLink>,
    /// `>HOLD` notices seen: the first is released at once, later ones (after an internal
    /// restart) after the backoff delay.
    pub(crate) holds: u32,
}

impl<P> Running<P> {
    pub(crate) fn new(proc: P, pid: u32) -> Self {
        Self {
            proc,
            pid,
            mgmt: None,
            holds: 0,
        }
    }
}

/// The `openvpn` process.
pub(crate) enum Conn<P> {
    /// No process; `restart_at` when the next one is due.
    Down { restart_at: Option<Instant> },
    /// Running; `release_at` when a delayed `hold release` is due.
    Up {
        run: Running<P>,
        release_at: Option<Instant>,
    },
    /// Told to exit; at `deadline` it gets SIGKILL (`killed` then), and is given up on at
    /// the next deadline.
    Exiting {
        run: Running<P>,
        deadline: Instant,
        killed: bool,
    },
}

/// What a `>HOLD` notice asks of the actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Nothing: no process, or it must not go on now.
    Ignore,
    /// Release it now (the start of the process).
    ReleaseNow,
    /// An internal restart: released after `delay` (set as the process's timer).
    ReleaseLater(Duration),
}

/// A timer of [`Conn`] that came due.
pub(crate) enum Due<P> {
    Nothing,
    /// The delayed `hold release`.
    Release,
    /// Time to start a new process.
    Restart,
    /// The process did not exit in time: SIGKILL it.
    Kill,
    /// It did not go away even after SIGKILL: given up on (the state is `Down` now).
    GiveUp(Running<P>),
}

impl<P> Conn<P> {
    pub(crate) fn running(&self) -> Option<&Running<P>> {
        match self {
            Self::Down { .. } => None,
            Self::Up { run, .. } | Self::Exiting { run, .. } => Some(run),
        }
    }

    pub(crate) fn running_mut(&mut self) -> Option<&mut Running<P>> {
        match self {
            Self::Down { .. } => None,
            Self::Up { run, .. } | Self::Exiting { run, .. } => Some(run),
        }
    }

    pub(crate) fn is_down(&self) -> bool {
        matches!(self, Self::Down { .. })
    }

    /// The next timer (a restart counts only when the actor may start a process).
    pub(crate) fn timer(&self, holding_off: bool) -> Option<Instant> {
        match self {
            Self::Down { restart_at } if !holding_off => *restart_at,
            Self::Down { .. } => None,
            Self::Up { release_at, .. } => *release_at,
            Self::Exiting { deadline, .. } => Some(*deadline),
        }
    }

    /// A new process runs.
    pub(crate) fn started(&mut self, run: Running<P>) {
        *self = Self::Up {
            run,
            release_at: None,
        };
    }

    /// The process exited (or was given up on); returns it.
    pub(crate) fn gone(&mut self) -> Option<Running<P>> {
        match std::mem::replace(self, Self::Down { restart_at: None }) {
            Self::Down { restart_at } => {
                *self = Self::Down { restart_at };
                None
            }
            Self::Up { run, .. } | Self::Exiting { run, .. } => Some(run),
        }
    }

    /// With no process: the next one starts at `at`.
    pub(crate) fn schedule_restart(&mut self, at: Instant) {
        if let Self::Down { restart_at } = self {
            *restart_at = Some(at);
        }
    }

    /// No delayed release and no restart: the actor waits or stops.
    pub(crate) fn hold_off(&mut self) {
        match self {
            Self::Down { restart_at } => *restart_at = None,
            Self::Up { release_at, .. } => *release_at = None,
            Self::Exiting { .. } => {}
        }
    }

    /// The process was told to exit: SIGKILL after `timeout`. When it already was, the
    /// deadline stays unless `reset`.
    pub(crate) fn exit_requested(&mut self, now: Instant, timeout: Duration, reset: bool) {
        let deadline = now + timeout;
        match std::mem::replace(self, Self::Down { restart_at: None }) {
            Self::Up { run, .. } => {
                *self = Self::Exiting {
                    run,
                    deadline,
                    killed: false,
                }
            }
            Self::Exiting {
                run,
                deadline: old,
                killed,
            } => {
                *self = Self::Exiting {
                    run,
                    deadline: if reset { deadline } else { old },
                    killed,
                }
            }
            down => *self = down,
        }
    }

    /// A `>HOLD` notice of the running process.
    pub(crate) fn on_hold(&mut self, holding_off: bool, delay: Duration, now: Instant) -> Hold {
        match self {
            Self::Down { .. } => Hold::Ignore,
            Self::Exiting { run, .. } => {
                run.holds += 1;
                Hold::Ignore
            }
            Self::Up { run, release_at } => {
                run.holds += 1;
                if holding_off {
                    Hold::Ignore
                } else if run.holds == 1 {
                    Hold::ReleaseNow
                } else {
                    *release_at = Some(now + delay);
                    Hold::ReleaseLater(delay)
                }
            }
        }
    }

    /// The timer that is due at `now`, if any, with the state moved on.
    pub(crate) fn due(&mut self, now: Instant, holding_off: bool) -> Due<P> {
        match self {
            Self::Exiting {
                deadline, killed, ..
            } if *deadline <= now => {
                if *killed {
                    match self.gone() {
                        Some(run) => Due::GiveUp(run),
                        None => Due::Nothing,
                    }
                } else {
                    *killed = true;
                    *deadline = now + KILL_GRACE;
                    Due::Kill
                }
            }
            Self::Up { release_at, .. } if release_at.is_some_and(|at| at <= now) => {
                *release_at = None;
                Due::Release
            }
            Self::Down { restart_at } if restart_at.is_some_and(|at| at <= now) && !holding_off => {
                *restart_at = None;
                Due::Restart
            }
            _ => Due::Nothing,
        }
    }
}

/// Why the actor is not (re)connecting although it was not asked to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The core answered suspending/suspended: openvpn is stopped until a payment brings
    /// the channel back (or it is terminated).
    Suspended {
        status: ServiceStatus,
        /// The call whose answer suspended the service.
        what: String,
        since: Instant,
        next_poll: Instant,
        next_log: Instant,
    },
    /// The server halted the client (or refused the credentials): openvpn is stopped and
    /// the core is asked why before `outcome` becomes final at `deadline`.
    Check {
        outcome: Outcome,
        deadline: Instant,
        next_poll: Instant,
    },
}

/// What a wait does after a status check that did not end it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AfterCheck {
    /// Stop for good with this outcome.
    GiveUp(Outcome),
    /// Keep waiting; `reason` is the new text of the state file (suspended), `log` whether
    /// it is time to log it again.
    Waiting { reason: Option<String>, log: bool },
}

impl Wait {
    pub(crate) fn suspended(
        status: ServiceStatus,
        what: &str,
        now: Instant,
        poll: Duration,
    ) -> Self {
        Self::Suspended {
            status,
            what: what.to_string(),
            since: now,
            next_poll: now + poll,
            next_log: now + SUSPEND_LOG_EVERY,
        }
    }

    pub(crate) fn check(outcome: Outcome, now: Instant, grace: Duration) -> Self {
        Self::Check {
            outcome,
            deadline: now + grace,
            next_poll: now,
        }
    }

    pub(crate) fn next_poll(&self) -> Instant {
        match self {
            Self::Suspended { next_poll, .. } | Self::Check { next_poll, .. } => *next_poll,
        }
    }

    /// Bookkeeping after a status check at `now` (`poll`: the interval, `max_wait`: how long
    /// a suspension may last).
    pub(crate) fn after_check(
        &mut self,
        now: Instant,
        poll: Duration,
        max_wait: Option<Duration>,
    ) -> AfterCheck {
        match self {
            Self::Check {
                outcome,
                deadline,
                next_poll,
            } => {
                if now >= *deadline {
                    return AfterCheck::GiveUp(match outcome.clone() {
                        Outcome::ServerHalted { reason } => Outcome::ServerHalted {
                            reason: format!("{reason}; the core still admits the channel"),
                        },
                        o => o,
                    });
                }
                *next_poll = (now + poll.min(HALT_CHECK_MAX_INTERVAL)).min(*deadline);
                AfterCheck::Waiting {
                    reason: None,
                    log: false,
                }
            }
            Self::Suspended {
                status,
                what,
                since,
                next_poll,
                next_log,
            } => {
                let waited = now.saturating_duration_since(*since);
                if let Some(max) = max_wait.filter(|max| waited >= *max) {
                    return AfterCheck::GiveUp(Outcome::CoreStopped {
                        status: *status,
                        reason: format!(
                            "service suspended by the agent (the core answered {status} to {what}); no payment within {} s, giving up",
                            max.as_secs()
                        ),
                    });
                }
                *next_poll = now + poll;
                if let Some(max) = max_wait {
                    *next_poll = (*next_poll).min(*since + max);
                }
                let log = now >= *next_log;
                if log {
                    *next_log = now + SUSPEND_LOG_EVERY;
                }
                AfterCheck::Waiting {
                    reason: Some(suspended_reason(*status, what, waited)),
                    log,
                }
            }
        }
    }
}

/// What the actor is after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Goal {
    /// Stay connected (reconnect after drops).
    Connect,
    /// Keep openvpn stopped and ask the core.
    Wait(Wait),
    /// Stop openvpn and end with this outcome.
    Stop(Outcome),
}

/// What a service status from the core means for the actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reaction {
    Nothing,
    /// terminating/terminated: stop for good.
    StopForGood(Outcome),
    /// suspending/suspended: stop openvpn and wait.
    Suspend,
    /// activating/active while suspended: a new openvpn.
    Resume,
}

impl Goal {
    /// openvpn must not be (re)started or released now: stopping, suspended or checking a
    /// halt.
    pub(crate) fn holding_off(&self) -> bool {
        !matches!(self, Self::Connect)
    }

    pub(crate) fn stopping(&self) -> bool {
        matches!(self, Self::Stop(_))
    }

    pub(crate) fn wait(&self) -> Option<&Wait> {
        match self {
            Self::Wait(w) => Some(w),
            _ => None,
        }
    }

    /// The reaction to `status`, answered to the call `what`.
    pub(crate) fn react(&self, status: ServiceStatus, what: &str) -> Reaction {
        if self.stopping() {
            Reaction::Nothing
        } else if status.is_final() {
            Reaction::StopForGood(Outcome::CoreStopped {
                status,
                reason: format!("the core answered {status} ({what})"),
            })
        } else if status.must_disconnect() {
            Reaction::Suspend
        } else if status.admits_login() && matches!(self, Self::Wait(Wait::Suspended { .. })) {
            Reaction::Resume
        } else {
            Reaction::Nothing
        }
    }
}

#[cfg(test)]
mod tests;
