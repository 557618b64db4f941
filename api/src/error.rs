use async_graphql::ErrorExtensions;
use service::ServiceError;

/// The stable error codes clients branch on (`extensions.code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthenticated,
    Forbidden,
    NotFound,
    BadUserInput,
    Internal,
}

impl ErrorCode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::BadUserInput => "BAD_USER_INPUT",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

/// An error as the client sees it: a code and a safe message. Internal details are logged
/// where the error is converted and never reach the client.
///
/// It deliberately does not implement `Display`, so it cannot slip into async-graphql's
/// catch-all `From<impl Display>` conversion and lose its code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

/// Result alias for resolvers.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// UNAUTHENTICATED with a message.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }

    /// BAD_USER_INPUT with a message.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadUserInput, message)
    }

    /// INTERNAL with the generic message; log the cause before calling this.
    pub fn internal() -> Self {
        Self::new(
            ErrorCode::Internal,
            "internal error; it has been logged, please retry later",
        )
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Unauthenticated(msg) => Self::new(ErrorCode::Unauthenticated, msg),
            ServiceError::Forbidden(msg) => Self::new(ErrorCode::Forbidden, msg),
            ServiceError::NotFound(what) => {
                Self::new(ErrorCode::NotFound, format!("{what} not found"))
            }
            ServiceError::BadInput(msg) => Self::new(ErrorCode::BadUserInput, msg),
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
            ext.set("code", self.code.as_str());
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
        assert_eq!(err.code, ErrorCode::Internal);
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
