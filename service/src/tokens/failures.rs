//! Turning a classified provider failure into what a person reads: a stable code, a
//! sentence saying what happened, and what to do about it.

use crate::{
    domain::Platform,
    providers::{ErrorClass, ProviderError, describe_reason},
};

/// A failure as shown to API clients and end users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureView {
    /// Stable code: RECONNECT_REQUIRED, RATE_LIMITED, PROVIDER_UNAVAILABLE,
    /// PROVIDER_MISCONFIGURED, NOT_REFRESHABLE_YET, ACCESS_DENIED or BAD_USER_INPUT.
    pub code: &'static str,
    pub message: String,
    /// What the user (or operator) should do, if anything.
    pub action: Option<String>,
}

/// Whether a transient failure is a rate limit (ours or the provider's).
fn is_rate_limited(error: &ProviderError) -> bool {
    error.http_status == Some(429)
        || error.code.contains("rate_limit")
        || matches!(
            error.code.split('/').next(),
            Some("4" | "17" | "32" | "613" | "80002")
        )
}

/// Describes `error` for the account `@username` of `platform`.
pub fn describe(error: &ProviderError, platform: Platform, username: Option<&str>) -> FailureView {
    let name = platform.display_name();
    let who = username
        .map(|u| format!("{name} access for @{u}"))
        .unwrap_or_else(|| format!("{name} access"));
    match error.class {
        ErrorClass::GrantDead => {
            let why = match error.reason() {
                Some(reason) => describe_reason(reason),
                None if error.code == "expired" => describe_reason("expired"),
                None => describe_reason(&error.code),
            };
            match error.missing_permission() {
                Some(permission) => FailureView {
                    code: "RECONNECT_REQUIRED",
                    message: format!(
                        "{who} stopped working because the permission {permission} is missing or was removed."
                    ),
                    action: Some(format!(
                        "Reconnect the account and grant the {permission} permission."
                    )),
                },
                None => FailureView {
                    code: "RECONNECT_REQUIRED",
                    message: format!("{who} stopped working because {why}."),
                    action: Some("Reconnect the account.".into()),
                },
            }
        }
        ErrorClass::Transient if is_rate_limited(error) => FailureView {
            code: "RATE_LIMITED",
            message: format!("{name} is rate limiting requests ({}).", error.code),
            action: Some(match error.retry_after {
                Some(wait) => format!("Retry in {} s; no user action is needed.", wait.as_secs().max(1)),
                None => "Retry later; no user action is needed.".into(),
            }),
        },
        ErrorClass::Transient => FailureView {
            code: "PROVIDER_UNAVAILABLE",
            message: format!("{name} did not answer properly ({}); the refresh will be retried.", error.code),
            action: Some("No user action is needed; retry later.".into()),
        },
        ErrorClass::Config => FailureView {
            code: "PROVIDER_MISCONFIGURED",
            message: format!(
                "{name} rejected this server's app configuration ({}): {}",
                error.code, error.message
            ),
            action: Some(
                "The operator must check the app's client credentials, redirect URI and permissions; users do not need to reconnect."
                    .into(),
            ),
        },
        ErrorClass::NotRefreshableYet => FailureView {
            code: "NOT_REFRESHABLE_YET",
            message: format!(
                "{name} tokens can only be refreshed once they are 24 hours old; the current token is still valid."
            ),
            action: None,
        },
        ErrorClass::InvalidInput if error.code == "access_denied" => FailureView {
            code: "ACCESS_DENIED",
            message: error.message.clone(),
            action: Some("Start the connection again and approve the requested permissions.".into()),
        },
        ErrorClass::InvalidInput => FailureView {
            code: "BAD_USER_INPUT",
            message: format!("{name} refused the request ({}): {}", error.code, error.message),
            action: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_grant_names_the_reason_and_the_fix() {
        let mut error = ProviderError::new(
            ErrorClass::GrantDead,
            "190/460",
            "Error validating access token",
        );
        error.reason = Some("password_changed");
        let view = describe(&error, Platform::Instagram, Some("shop"));
        assert_eq!(view.code, "RECONNECT_REQUIRED");
        assert_eq!(
            view.message,
            "Instagram access for @shop stopped working because the password was changed."
        );
        assert_eq!(view.action.as_deref(), Some("Reconnect the account."));
    }

    #[test]
    fn removed_permissions_are_named_in_the_action() {
        let mut error = ProviderError::new(
            ErrorClass::GrantDead,
            "200",
            "(#200) Requires instagram_business_content_publish permission",
        );
        error.reason = Some("permission_revoked");
        let error =
            error.with_missing_permission(Some("instagram_business_content_publish".into()));
        let view = describe(&error, Platform::Instagram, Some("shop"));
        assert_eq!(view.code, "RECONNECT_REQUIRED");
        assert_eq!(
            view.action.as_deref(),
            Some(
                "Reconnect the account and grant the instagram_business_content_publish permission."
            )
        );
    }

    #[test]
    fn transient_failures_never_ask_for_a_reconnect() {
        let mut limited =
            ProviderError::new(ErrorClass::Transient, "rate_limit_exceeded", "slow down");
        limited.http_status = Some(429);
        limited.retry_after = Some(std::time::Duration::from_secs(3));
        let view = describe(&limited, Platform::TikTok, None);
        assert_eq!(view.code, "RATE_LIMITED");
        assert!(view.action.as_deref().is_some_and(|a| a.contains("3 s")));
        let down = ProviderError::new(ErrorClass::Transient, "http_503", "unavailable");
        assert_eq!(
            describe(&down, Platform::TikTok, None).code,
            "PROVIDER_UNAVAILABLE"
        );
        let config = ProviderError::new(ErrorClass::Config, "invalid_client", "bad client");
        let view = describe(&config, Platform::TikTok, Some("a"));
        assert_eq!(view.code, "PROVIDER_MISCONFIGURED");
        assert!(!view.message.contains("Reconnect"));
    }
}
