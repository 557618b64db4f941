use async_graphql::ErrorExtensions;
use service::{ServiceError, tokens::failures};

/// Stable `extensions.code`s of errors that do not come from a provider.
pub mod code {
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
    pub const MISSING_SCOPES: &str = "MISSING_SCOPES";
    /// The OAuth callback came without the cookie of the browser that started the flow.
    pub const OAUTH_BROWSER_MISMATCH: &str = "OAUTH_BROWSER_MISMATCH";
    pub(crate) const INTERNAL: &str = "INTERNAL";
    /// Too many potential nodes, root fields or aliases in one operation.
    pub const QUERY_TOO_COMPLEX: &str = "QUERY_TOO_COMPLEX";
    /// The API key's request budget is spent; `extensions.retryAfterSeconds` says when to retry.
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    /// The request ran longer than the per-request timeout and was cancelled.
    pub const REQUEST_TIMEOUT: &str = "REQUEST_TIMEOUT";
}

/// An error as the client sees it: a stable code (`extensions.code`), a safe message and,
/// for provider failures, what to do (`extensions.action`, `extensions.retryAfterSeconds`).
/// Provider codes: RECONNECT_REQUIRED, RATE_LIMITED, PROVIDER_UNAVAILABLE,
/// PROVIDER_MISCONFIGURED, NOT_REFRESHABLE_YET, ACCESS_DENIED. Internal details are logged
/// where the error is converted and never reach the client.
///
/// It deliberately does not implement `Display`, so it cannot slip into async-graphql's
/// catch-all `From<impl Display>` conversion and lose its code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
    pub action: Option<String>,
    pub retry_after_seconds: Option<u64>,
}

/// Result alias for resolvers.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with a code and message.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            action: None,
            retry_after_seconds: None,
        }
    }

    /// UNAUTHENTICATED with a message.
    pub(crate) fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(code::UNAUTHENTICATED, message)
    }

    /// BAD_USER_INPUT with a message.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(code::BAD_USER_INPUT, message)
    }

    /// INTERNAL with the generic message; log the cause before calling this.
    pub fn internal() -> Self {
        Self::new(
            code::INTERNAL,
            "internal error; it has been logged, please retry later",
        )
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Unauthenticated(msg) => Self::new(code::UNAUTHENTICATED, msg),
            ServiceError::Forbidden(msg) => Self::new(code::FORBIDDEN, msg),
            ServiceError::NotFound(what) => Self::new(code::NOT_FOUND, format!("{what} not found")),
            ServiceError::BadInput(msg) => Self::new(code::BAD_USER_INPUT, msg),
            err @ ServiceError::WrongBrowser => {
                Self::new(code::OAUTH_BROWSER_MISMATCH, err.to_string())
            }
            ServiceError::MissingScopes(missing) => Self {
                code: code::MISSING_SCOPES,
                message: format!(
                    "the user did not grant these permissions: {}",
                    missing.join(", ")
                ),
                action: Some("Connect again and approve every requested permission.".to_owned()),
                retry_after_seconds: None,
            },
            ServiceError::Provider(platform, error) => {
                let view = failures::describe(&error, platform, None);
                Self {
                    code: view.code,
                    message: view.message,
                    action: view.action,
                    retry_after_seconds: error.retry_after.map(|d| d.as_secs().max(1)),
                }
            }
            err @ (ServiceError::Db(_) | ServiceError::Internal(_)) => {
                tracing::error!(error = %err, "request failed");
                Self::internal()
            }
        }
    }
}

impl ErrorExtensions for ApiError {
    fn extend(&self) -> async_graphql::Error {
        async_graphql::Error::new(self.message.clone()).extend_with(|_, ext| {
            ext.set("code", self.code);
            if let Some(action) = &self.action {
                ext.set("action", action.as_str());
            }
            if let Some(seconds) = self.retry_after_seconds {
                ext.set("retryAfterSeconds", seconds);
            }
        })
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(err: ApiError) -> Self {
        err.extend()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_errors_are_hidden() {
        let err: ApiError = ServiceError::Db(sea_orm::DbErr::Custom(
            "relation secret_table missing".into(),
        ))
        .into();
        assert_eq!(err.code, code::INTERNAL);
        assert!(!err.message.contains("secret_table"));
    }

    #[test]
    fn code_is_an_extension() {
        let err: async_graphql::Error = ApiError::bad_input("nope").into();
        let ext = err.extensions.expect("extensions");
        assert_eq!(
            ext.get("code"),
            Some(&async_graphql::Value::from("BAD_USER_INPUT"))
        );
    }
}
