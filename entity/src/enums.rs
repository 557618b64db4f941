//! The closed sets of values the tables store, as Rust enums: a typo does not compile, and a
//! row holding an unknown value fails to load instead of flowing on as a string.
//!
//! Each enum is stored as a plain string column (no database enum type, no migration): the
//! string of a variant is its `string_value`, and serde uses the same string, so JSON (job
//! payloads, the Redis event relay) looks exactly as it did when these were `String`s. The
//! stored strings are data: never rename one. The tests pin every string.

use std::{fmt, str::FromStr};

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A string that is not the name of any variant of an enum (see the [`FromStr`] impls).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownValue {
    /// What was parsed, e.g. `platform`.
    pub what: &'static str,
    /// The string that matched no variant.
    pub value: String,
    /// The accepted strings, for the message.
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?}: expected ", self.what, self.value)?;
        let last = self.expected.len().saturating_sub(1);
        for (i, name) in self.expected.iter().enumerate() {
            match i {
                0 => {}
                i if i == last => f.write_str(" or ")?,
                _ => f.write_str(", ")?,
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownValue {}

/// Defines a stored enum: the sea-orm and serde derives with one string per variant, plus
/// `ALL`, `NAMES`, `as_str`, `Display` and a case-insensitive `FromStr`.
macro_rules! stored_enum {
    (
        $(#[$meta:meta])*
        $name:ident as $what:literal {
            $($(#[$vmeta:meta])* $variant:ident = $value:tt,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize,
            Deserialize,
        )]
        #[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
        pub enum $name {
            $(
                $(#[$vmeta])*
                #[sea_orm(string_value = $value)]
                #[serde(rename = $value)]
                $variant,
            )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [$name; [$($value,)+].len()] = [$($name::$variant,)+];

            /// The stored string of every variant, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($value,)+];

            /// The stored string (also the serde and display form).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $value,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            /// The variant whose stored string is `s`, ignoring ASCII case.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::ALL
                    .into_iter()
                    .find(|v| v.as_str().eq_ignore_ascii_case(s))
                    .ok_or_else(|| UnknownValue {
                        what: $what,
                        value: s.to_owned(),
                        expected: $name::NAMES,
                    })
            }
        }
    };
}

stored_enum! {
    /// A social platform whose OAuth grants the service keeps alive (ordered as declared).
    #[derive(PartialOrd, Ord)]
    Platform as "platform" {
        TikTok = "tiktok",
        Instagram = "instagram",
    }
}

impl Platform {
    /// The human name (`TikTok`, `Instagram`).
    pub fn display_name(self) -> &'static str {
        match self {
            Platform::TikTok => "TikTok",
            Platform::Instagram => "Instagram",
        }
    }
}

stored_enum! {
    /// The lifecycle state of a connected account (`social_accounts.status`).
    AccountStatus as "account status" {
        /// Tokens are valid and refreshed on schedule.
        Active = "ACTIVE",
        /// Refreshes fail with transient errors and are being retried.
        RefreshFailing = "REFRESH_FAILING",
        /// The grant is dead (revoked, password changed...): the user must reconnect.
        ReconnectRequired = "RECONNECT_REQUIRED",
        /// The token expired before it could be refreshed: the user must reconnect.
        Expired = "EXPIRED",
        /// Disconnected on request; tokens deleted.
        Disconnected = "DISCONNECTED",
        /// Deactivated by an admin; purged after the retention period.
        Deactivated = "DEACTIVATED",
    }
}

stored_enum! {
    /// Roles of an API key or a dashboard user, from most to least powerful.
    Role as "role" {
        /// Runs the deployment: everything an ADMIN may do in its own tenant, plus the
        /// deployment-wide operations (key rotation, provider statistics, detailed system
        /// health, the deployment-wide audit entries). Created on the command line only.
        Operator = "OPERATOR",
        /// Everything within its tenant, including API keys and deactivation.
        Admin = "ADMIN",
        /// Connect, refresh and disconnect accounts; read access tokens.
        Integrator = "INTEGRATOR",
        /// Read only.
        Viewer = "VIEWER",
    }
}

impl Role {
    fn rank(self) -> u8 {
        match self {
            Role::Operator => 4,
            Role::Admin => 3,
            Role::Integrator => 2,
            Role::Viewer => 1,
        }
    }

    /// Whether this role includes everything `required` may do.
    pub fn includes(self, required: Role) -> bool {
        self.rank() >= required.rank()
    }
}

stored_enum! {
    /// How a refresh attempt ended (`refresh_attempts.outcome`).
    RefreshOutcome as "refresh outcome" {
        /// New tokens stored.
        Succeeded = "SUCCEEDED",
        /// A transient failure; a retry is scheduled.
        FailedTransient = "FAILED_TRANSIENT",
        /// A dead grant or a configuration problem; no automatic retry will help.
        FailedPermanent = "FAILED_PERMANENT",
        /// Nothing to do (already fresh, not due, not refreshable yet).
        Skipped = "SKIPPED",
    }
}

stored_enum! {
    /// Why a refresh ran (`refresh_attempts.trigger`, and the refresh job's payload).
    RefreshTrigger as "refresh trigger" {
        /// The sweep found the token inside its refresh window.
        Sweep = "sweep",
        /// A retry after a transient failure.
        Retry = "retry",
        /// A bulk `refreshAccounts` asked for it (runs whether due or not).
        Bulk = "bulk",
        /// A request refreshed it (`refreshAccountToken`, the dashboard, or `accessToken`
        /// refreshing a token about to expire). Never queued.
        Manual = "manual",
    }
}

stored_enum! {
    /// What a failed provider call means for the caller (`refresh_attempts.error_class`).
    ErrorClass as "error class" {
        /// Temporary: network, timeout, 5xx, rate limit. Retry later (see `retry_after`).
        Transient = "transient",
        /// The grant is dead (revoked, expired, password changed...): the user must reconnect.
        GrantDead = "grant_dead",
        /// Our configuration is wrong (client id/secret, redirect URI, app permissions).
        Config = "config",
        /// The token is too young to be refreshed (Instagram: under 24 hours); try again later.
        NotRefreshableYet = "not_refreshable_yet",
        /// The request itself was invalid (bad parameter, malformed code...).
        InvalidInput = "invalid_input",
    }
}

stored_enum! {
    /// What happened to a token or a provider (`token_events.kind`).
    EventKind as "event kind" {
        Connected = "CONNECTED",
        Refreshed = "REFRESHED",
        /// A transient failure; a retry is scheduled.
        RefreshFailed = "REFRESH_FAILED",
        ReconnectRequired = "RECONNECT_REQUIRED",
        /// A token that cannot be extended expires soon.
        Expiring = "EXPIRING",
        Expired = "EXPIRED",
        Disconnected = "DISCONNECTED",
        KeyRotationDue = "KEY_ROTATION_DUE",
        ProviderDegraded = "PROVIDER_DEGRADED",
        ProviderRecovered = "PROVIDER_RECOVERED",
        /// A scheduled backup failed or did not verify.
        BackupFailed = "BACKUP_FAILED",
        /// No backup was verified for longer than the overdue period.
        BackupOverdue = "BACKUP_OVERDUE",
        /// The database grew more than the threshold within the growth window.
        DatabaseGrowth = "DATABASE_GROWTH",
    }
}

stored_enum! {
    /// What an end-user notification is about (`notifications.incident`); open until the
    /// account works again.
    Incident as "incident" {
        /// The grant is dead: the user must reconnect.
        ReconnectRequired = "RECONNECT_REQUIRED",
        /// The token expired: the user must reconnect.
        Expired = "EXPIRED",
        /// Refreshes keep failing transiently; nothing for the user to do yet.
        RefreshFailing = "REFRESH_FAILING",
    }
}

stored_enum! {
    /// Where a webhook delivery stands (`webhook_deliveries.status`).
    DeliveryStatus as "delivery status" {
        /// Not delivered yet; tried again at `next_attempt_at`.
        Pending = "PENDING",
        /// The endpoint answered 2xx.
        Delivered = "DELIVERED",
        /// Given up after the last retry.
        Failed = "FAILED",
    }
}

stored_enum! {
    /// Everything the audit log records (`audit_logs.action`). Names are stable: clients
    /// filter on them.
    AuditAction as "audit action" {
        /// An API key was created.
        ApiKeyCreated = "API_KEY_CREATED",
        /// An API key was revoked.
        ApiKeyRevoked = "API_KEY_REVOKED",
        /// An OAuth connection was started.
        ConnectionStarted = "CONNECTION_STARTED",
        /// A new account was connected.
        AccountConnected = "ACCOUNT_CONNECTED",
        /// An existing account was connected again.
        AccountReconnected = "ACCOUNT_RECONNECTED",
        /// An account was disconnected and its tokens deleted.
        AccountDisconnected = "ACCOUNT_DISCONNECTED",
        /// An account was deactivated.
        AccountDeactivated = "ACCOUNT_DEACTIVATED",
        /// A deactivated account was reactivated.
        AccountReactivated = "ACCOUNT_REACTIVATED",
        /// A long-deactivated account's tokens and personal data were deleted.
        AccountPurged = "ACCOUNT_PURGED",
        /// The platform reported that the user removed the app; the tokens were deleted.
        AccountDeauthorized = "ACCOUNT_DEAUTHORIZED",
        /// The platform asked for the user's data to be deleted; tokens and personal data
        /// were deleted.
        AccountDataDeleted = "ACCOUNT_DATA_DELETED",
        /// A token was refreshed at the provider.
        TokenRefreshed = "TOKEN_REFRESHED",
        /// A token refresh failed.
        TokenRefreshFailed = "TOKEN_REFRESH_FAILED",
        /// An access token was read through the API.
        AccessTokenRead = "ACCESS_TOKEN_READ",
        /// An integrator reported that the platform refused a token; details say what
        /// tokenwarden found and did.
        TokenRejected = "TOKEN_REJECTED",
        /// A new encryption key became active.
        EncryptionKeyRotated = "ENCRYPTION_KEY_ROTATED",
        /// A webhook was registered.
        WebhookRegistered = "WEBHOOK_REGISTERED",
        /// A webhook was deleted.
        WebhookDeleted = "WEBHOOK_DELETED",
        /// A webhook failing for 24 hours was disabled.
        WebhookDisabled = "WEBHOOK_DISABLED",
        /// A dashboard user was created.
        UserCreated = "USER_CREATED",
        /// A dashboard user was disabled and their sessions ended.
        UserDisabled = "USER_DISABLED",
        /// A dashboard user signed in.
        UserSignedIn = "USER_SIGNED_IN",
        /// A sign-in was refused (details say why; never the password or code).
        UserSignInFailed = "USER_SIGN_IN_FAILED",
        /// A dashboard user signed out.
        UserSignedOut = "USER_SIGNED_OUT",
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveEnum, Iterable};

    use super::*;

    /// Checks that `table` lists every variant exactly once with today's stored string, and
    /// that each variant round-trips through that string in sea-orm, serde and `FromStr`.
    fn pinned<E>(table: &[(E, &str)])
    where
        E: ActiveEnum<Value = String>
            + Iterable
            + Copy
            + PartialEq
            + fmt::Debug
            + fmt::Display
            + FromStr<Err = UnknownValue>
            + Serialize
            + for<'de> Deserialize<'de>,
    {
        let variants: Vec<E> = E::iter().collect();
        assert_eq!(variants.len(), table.len(), "the table lists every variant");
        for &(variant, stored) in table {
            assert!(variants.contains(&variant));
            assert_eq!(variant.to_value(), stored, "stored string of {variant:?}");
            assert_eq!(variant.to_string(), stored);
            assert_eq!(E::try_from_value(&stored.to_owned()).ok(), Some(variant));
            assert_eq!(stored.parse::<E>().ok(), Some(variant));
            assert_eq!(stored.to_ascii_uppercase().parse::<E>().ok(), Some(variant));
            let json = serde_json::to_string(&variant).expect("serializes");
            assert_eq!(json, format!("\"{stored}\""));
            assert_eq!(serde_json::from_str::<E>(&json).ok(), Some(variant));
        }
        assert!(E::try_from_value(&"no such value".to_owned()).is_err());
        assert!("no such value".parse::<E>().is_err());
        assert!(serde_json::from_str::<E>("\"no such value\"").is_err());
    }

    #[test]
    fn platform_strings() {
        pinned(&[
            (Platform::TikTok, "tiktok"),
            (Platform::Instagram, "instagram"),
        ]);
        assert_eq!(Platform::ALL, [Platform::TikTok, Platform::Instagram]);
    }

    #[test]
    fn account_status_strings() {
        pinned(&[
            (AccountStatus::Active, "ACTIVE"),
            (AccountStatus::RefreshFailing, "REFRESH_FAILING"),
            (AccountStatus::ReconnectRequired, "RECONNECT_REQUIRED"),
            (AccountStatus::Expired, "EXPIRED"),
            (AccountStatus::Disconnected, "DISCONNECTED"),
            (AccountStatus::Deactivated, "DEACTIVATED"),
        ]);
    }

    #[test]
    fn role_strings_and_order() {
        pinned(&[
            (Role::Operator, "OPERATOR"),
            (Role::Admin, "ADMIN"),
            (Role::Integrator, "INTEGRATOR"),
            (Role::Viewer, "VIEWER"),
        ]);
        assert!(Role::Operator.includes(Role::Admin));
        assert!(!Role::Admin.includes(Role::Operator));
        assert!(Role::Admin.includes(Role::Integrator));
        assert!(Role::Integrator.includes(Role::Viewer));
        assert!(!Role::Viewer.includes(Role::Integrator));
        assert!(!Role::Integrator.includes(Role::Admin));
    }

    #[test]
    fn refresh_outcome_strings() {
        pinned(&[
            (RefreshOutcome::Succeeded, "SUCCEEDED"),
            (RefreshOutcome::FailedTransient, "FAILED_TRANSIENT"),
            (RefreshOutcome::FailedPermanent, "FAILED_PERMANENT"),
            (RefreshOutcome::Skipped, "SKIPPED"),
        ]);
    }

    #[test]
    fn refresh_trigger_strings() {
        pinned(&[
            (RefreshTrigger::Sweep, "sweep"),
            (RefreshTrigger::Retry, "retry"),
            (RefreshTrigger::Bulk, "bulk"),
            (RefreshTrigger::Manual, "manual"),
        ]);
    }

    #[test]
    fn error_class_strings() {
        pinned(&[
            (ErrorClass::Transient, "transient"),
            (ErrorClass::GrantDead, "grant_dead"),
            (ErrorClass::Config, "config"),
            (ErrorClass::NotRefreshableYet, "not_refreshable_yet"),
            (ErrorClass::InvalidInput, "invalid_input"),
        ]);
    }

    #[test]
    fn event_kind_strings() {
        pinned(&[
            (EventKind::Connected, "CONNECTED"),
            (EventKind::Refreshed, "REFRESHED"),
            (EventKind::RefreshFailed, "REFRESH_FAILED"),
            (EventKind::ReconnectRequired, "RECONNECT_REQUIRED"),
            (EventKind::Expiring, "EXPIRING"),
            (EventKind::Expired, "EXPIRED"),
            (EventKind::Disconnected, "DISCONNECTED"),
            (EventKind::KeyRotationDue, "KEY_ROTATION_DUE"),
            (EventKind::ProviderDegraded, "PROVIDER_DEGRADED"),
            (EventKind::ProviderRecovered, "PROVIDER_RECOVERED"),
            (EventKind::BackupFailed, "BACKUP_FAILED"),
            (EventKind::BackupOverdue, "BACKUP_OVERDUE"),
            (EventKind::DatabaseGrowth, "DATABASE_GROWTH"),
        ]);
    }

    #[test]
    fn incident_strings() {
        pinned(&[
            (Incident::ReconnectRequired, "RECONNECT_REQUIRED"),
            (Incident::Expired, "EXPIRED"),
            (Incident::RefreshFailing, "REFRESH_FAILING"),
        ]);
    }

    #[test]
    fn delivery_status_strings() {
        pinned(&[
            (DeliveryStatus::Pending, "PENDING"),
            (DeliveryStatus::Delivered, "DELIVERED"),
            (DeliveryStatus::Failed, "FAILED"),
        ]);
    }

    #[test]
    fn audit_action_strings() {
        pinned(&[
            (AuditAction::ApiKeyCreated, "API_KEY_CREATED"),
            (AuditAction::ApiKeyRevoked, "API_KEY_REVOKED"),
            (AuditAction::ConnectionStarted, "CONNECTION_STARTED"),
            (AuditAction::AccountConnected, "ACCOUNT_CONNECTED"),
            (AuditAction::AccountReconnected, "ACCOUNT_RECONNECTED"),
            (AuditAction::AccountDisconnected, "ACCOUNT_DISCONNECTED"),
            (AuditAction::AccountDeactivated, "ACCOUNT_DEACTIVATED"),
            (AuditAction::AccountReactivated, "ACCOUNT_REACTIVATED"),
            (AuditAction::AccountPurged, "ACCOUNT_PURGED"),
            (AuditAction::AccountDeauthorized, "ACCOUNT_DEAUTHORIZED"),
            (AuditAction::AccountDataDeleted, "ACCOUNT_DATA_DELETED"),
            (AuditAction::TokenRefreshed, "TOKEN_REFRESHED"),
            (AuditAction::TokenRefreshFailed, "TOKEN_REFRESH_FAILED"),
            (AuditAction::AccessTokenRead, "ACCESS_TOKEN_READ"),
            (AuditAction::TokenRejected, "TOKEN_REJECTED"),
            (AuditAction::EncryptionKeyRotated, "ENCRYPTION_KEY_ROTATED"),
            (AuditAction::WebhookRegistered, "WEBHOOK_REGISTERED"),
            (AuditAction::WebhookDeleted, "WEBHOOK_DELETED"),
            (AuditAction::WebhookDisabled, "WEBHOOK_DISABLED"),
            (AuditAction::UserCreated, "USER_CREATED"),
            (AuditAction::UserDisabled, "USER_DISABLED"),
            (AuditAction::UserSignedIn, "USER_SIGNED_IN"),
            (AuditAction::UserSignInFailed, "USER_SIGN_IN_FAILED"),
            (AuditAction::UserSignedOut, "USER_SIGNED_OUT"),
        ]);
    }

    #[test]
    fn unknown_values_say_what_is_expected() {
        let err = "myspace".parse::<Platform>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown platform \"myspace\": expected tiktok or instagram"
        );
        let err = "root".parse::<Role>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown role \"root\": expected OPERATOR, ADMIN, INTEGRATOR or VIEWER"
        );
    }
}
