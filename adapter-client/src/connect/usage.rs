//! Byte accounting of one `openvpn` process: `>BYTECOUNT` is cumulative for the process
//! (also across its internal restarts), and each session gets the part counted since the
//! previous session of that process ended. Pure: no I/O.
//!
//! Usage never goes backwards: OpenVPN's counters only grow during a process, so a lower
//! count (a damaged line, a bug) is ignored, direction by direction. A session's counts are
//! therefore never lower than what was already reported for it, also after a reconnect
//! inside the process moved the baseline, and the final StopSession carries the highest
//! complete count read (the management reader never passes on a cut or unfinished line).

/// Per-direction byte counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Counts {
    /// `self - base`; a counter below its base means OpenVPN restarted its counters, and
    /// the absolute value is the session's count.
    pub fn since(self, base: Counts) -> Counts {
        let d = |now: u64, b: u64| if now >= b { now - b } else { now };
        Counts {
            bytes_in: d(self.bytes_in, base.bytes_in),
            bytes_out: d(self.bytes_out, base.bytes_out),
        }
    }

    /// Both directions together.
    pub fn total(self) -> u64 {
        self.bytes_in.saturating_add(self.bytes_out)
    }
}

/// The byte counters of the current `openvpn` process and where its current session began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UsageMeter {
    /// Absolute BYTECOUNT of the process.
    abs: Counts,
    /// Absolute counts already attributed to an ended session of this process.
    consumed: Counts,
}

impl UsageMeter {
    /// A new process: its counters start at zero.
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }

    /// A `>BYTECOUNT` of the process. A counter lower than before is ignored (the other
    /// direction still counts); false when that happened.
    pub(crate) fn observe(&mut self, abs: Counts) -> bool {
        let grew = abs.bytes_in >= self.abs.bytes_in && abs.bytes_out >= self.abs.bytes_out;
        self.abs = Counts {
            bytes_in: self.abs.bytes_in.max(abs.bytes_in),
            bytes_out: self.abs.bytes_out.max(abs.bytes_out),
        };
        grew
    }

    /// Where a session that starts now begins.
    pub(crate) fn baseline(&self) -> Counts {
        self.consumed
    }

    /// The counts of a session that began at `baseline`.
    pub(crate) fn session_counts(&self, baseline: Counts) -> Counts {
        self.abs.since(baseline)
    }

    /// The current session ended: the next one of this process counts from here.
    pub(crate) fn session_ended(&mut self) {
        self.consumed = self.abs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(i: u64, o: u64) -> Counts {
        Counts {
            bytes_in: i,
            bytes_out: o,
        }
    }

    #[test]
    fn counts_since_baseline() {
        assert_eq!(c(150, 250).since(c(100, 200)), c(50, 50));
        assert_eq!(c(10, 250).since(c(100, 200)), c(10, 50), "reset counter");
        assert_eq!(c(0, 0).since(c(0, 0)), c(0, 0));
        assert_eq!(c(u64::MAX, 2).total(), u64::MAX);
    }

    #[test]
    fn sessions_of_one_process_split_its_counters() {
        let mut m = UsageMeter::default();
        m.observe(c(100, 200));
        // A session starts after some bytes of the handshake: they count for it.
        let b1 = m.baseline();
        m.observe(c(1000, 2000));
        assert_eq!(m.session_counts(b1), c(1000, 2000));
        m.session_ended();
        // The next session of the same process counts from where the first ended.
        let b2 = m.baseline();
        m.observe(c(1500, 2100));
        assert_eq!(m.session_counts(b2), c(500, 100));
        // A new process starts from zero.
        m.reset();
        m.observe(c(7, 8));
        assert_eq!(m.session_counts(m.baseline()), c(7, 8));
    }

    /// Issue 11, item 12: a lower count (damaged line, bug) never makes usage go backwards,
    /// within a session or after a reconnect moved the baseline.
    #[test]
    fn usage_never_goes_backwards() {
        let mut m = UsageMeter::default();
        assert!(m.observe(c(1000, 1000)));
        m.session_ended();
        let b = m.baseline();
        assert!(m.observe(c(1200, 1300)));
        assert_eq!(m.session_counts(b), c(200, 300));
        // Below the baseline, below the last count, one direction only: ignored.
        for lower in [c(100, 150), c(1100, 1300), c(1200, 1299)] {
            assert!(!m.observe(lower), "{lower:?}");
            assert_eq!(m.session_counts(b), c(200, 300), "{lower:?}");
        }
        assert!(!m.observe(c(1250, 5)), "one direction lower");
        assert_eq!(m.session_counts(b), c(250, 300), "the other still counts");
        assert!(m.observe(c(1250, 1350)));
        assert_eq!(m.session_counts(b), c(250, 350));
    }
}
