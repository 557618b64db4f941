use std::{fmt, str::FromStr};

use crate::error::ServiceError;

/// A social platform whose OAuth grants the service keeps alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    TikTok,
    Instagram,
}

impl Platform {
    /// All platforms, in display order.
    pub const ALL: [Platform; 2] = [Platform::TikTok, Platform::Instagram];

    /// The stored name (`tiktok`, `instagram`), also used in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::TikTok => "tiktok",
            Platform::Instagram => "instagram",
        }
    }

    /// The human name (`TikTok`, `Instagram`).
    pub fn display_name(self) -> &'static str {
        match self {
            Platform::TikTok => "TikTok",
            Platform::Instagram => "Instagram",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Platform {
    type Err = ServiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tiktok" => Ok(Platform::TikTok),
            "instagram" => Ok(Platform::Instagram),
            _ => Err(ServiceError::bad_input(format!(
                "unknown platform {s:?}: expected tiktok or instagram"
            ))),
        }
    }
}

/// The lifecycle state of a connected account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccountStatus {
    /// Tokens are valid and refreshed on schedule.
    Active,
    /// Refreshes fail with transient errors and are being retried.
    RefreshFailing,
    /// The grant is dead (revoked, password changed...): the user must reconnect.
    ReconnectRequired,
    /// The token expired before it could be refreshed: the user must reconnect.
    Expired,
    /// Disconnected on request; tokens deleted.
    Disconnected,
    /// Deactivated by an admin; purged after the retention period.
    Deactivated,
}

impl AccountStatus {
    /// All statuses.
    pub const ALL: [AccountStatus; 6] = [
        AccountStatus::Active,
        AccountStatus::RefreshFailing,
        AccountStatus::ReconnectRequired,
        AccountStatus::Expired,
        AccountStatus::Disconnected,
        AccountStatus::Deactivated,
    ];

    /// The stored name (`ACTIVE`, `REFRESH_FAILING`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "ACTIVE",
            AccountStatus::RefreshFailing => "REFRESH_FAILING",
            AccountStatus::ReconnectRequired => "RECONNECT_REQUIRED",
            AccountStatus::Expired => "EXPIRED",
            AccountStatus::Disconnected => "DISCONNECTED",
            AccountStatus::Deactivated => "DEACTIVATED",
        }
    }
}

impl fmt::Display for AccountStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AccountStatus {
    type Err = ServiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AccountStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| ServiceError::Internal(format!("unknown account status {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for status in AccountStatus::ALL {
            assert_eq!(status.as_str().parse::<AccountStatus>().ok(), Some(status));
        }
        for platform in Platform::ALL {
            assert_eq!(platform.as_str().parse::<Platform>().ok(), Some(platform));
        }
        assert!("myspace".parse::<Platform>().is_err());
    }
}
