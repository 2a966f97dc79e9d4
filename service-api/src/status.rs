//! The service status of a channel (DESIGN §2) and what each status means for an adapter.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The service status of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ServiceStatus {
    Pending,
    Activating,
    Active,
    Suspending,
    Suspended,
    Terminating,
    Terminated,
}

impl ServiceStatus {
    pub const ALL: [ServiceStatus; 7] = [
        Self::Pending,
        Self::Activating,
        Self::Active,
        Self::Suspending,
        Self::Suspended,
        Self::Terminating,
        Self::Terminated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Activating => "activating",
            Self::Active => "active",
            Self::Suspending => "suspending",
            Self::Suspended => "suspended",
            Self::Terminating => "terminating",
            Self::Terminated => "terminated",
        }
    }

    /// AuthClient admits only these.
    pub fn admits_login(self) -> bool {
        matches!(self, Self::Activating | Self::Active)
    }

    /// The adapter must cut the client off at once.
    pub fn must_disconnect(self) -> bool {
        matches!(
            self,
            Self::Suspending | Self::Suspended | Self::Terminating | Self::Terminated
        )
    }

    /// No further service will ever be given on this channel.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Terminating | Self::Terminated)
    }
}

impl fmt::Display for ServiceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ServiceStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown service status {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_roundtrip_and_rules() {
        for s in ServiceStatus::ALL {
            assert_eq!(s.as_str().parse::<ServiceStatus>(), Ok(s));
            let j = serde_json::to_string(&s).expect("ser");
            assert_eq!(j, format!("\"{}\"", s.as_str()));
        }
        assert!(ServiceStatus::Active.admits_login());
        assert!(!ServiceStatus::Suspended.admits_login());
        assert!(ServiceStatus::Suspending.must_disconnect());
    }
}
