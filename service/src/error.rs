use sea_orm::DbErr;

use crate::{domain::Platform, providers::ProviderError};

/// Result alias of the service layer.
pub type ServiceResult<T> = Result<T, ServiceError>;

/// What went wrong, in terms a caller can act on. The API layer maps each variant to a
/// stable GraphQL `extensions.code`; `Db` and `Internal` are logged in full and shown to
/// clients only as a generic message.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No key, an unknown key or a revoked key.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The key is valid but its role does not allow the operation.
    #[error("{0}")]
    Forbidden(String),
    /// The object does not exist or belongs to another tenant (indistinguishable on purpose).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The input is invalid; the message says which part and why.
    #[error("{0}")]
    BadInput(String),
    /// The provider refused or failed; the class says whether to retry, reconnect or fix
    /// the configuration.
    #[error("{0}: {1}")]
    Provider(Platform, ProviderError),
    /// An OAuth callback opened in a browser other than the one that launched the
    /// connection (its per-flow cookie is missing or different). The state is not consumed.
    #[error(
        "this connection was started in another browser; finish it in the browser that \
         opened the connection link, or start again"
    )]
    WrongBrowser,
    /// The user did not grant every requested permission.
    #[error("the user did not grant these permissions: {}", .0.join(", "))]
    MissingScopes(Vec<String>),
    /// A database error. Never shown to clients.
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    /// Any other unexpected failure. Never shown to clients.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A string that names no variant of a stored enum: when parsed, it came from a caller
/// (a URL, a command line), so it is bad input.
impl From<entity::enums::UnknownValue> for ServiceError {
    fn from(err: entity::enums::UnknownValue) -> Self {
        Self::BadInput(err.to_string())
    }
}

impl ServiceError {
    /// A failure of the token vault (wrong or missing key). Shown as internal.
    pub fn vault(err: crate::tokens::vault::VaultError) -> Self {
        Self::Internal(format!("token vault: {err}"))
    }

    /// A `BadInput` from anything displayable.
    pub fn bad_input(msg: impl Into<String>) -> Self {
        Self::BadInput(msg.into())
    }
}
