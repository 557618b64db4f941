use std::sync::Arc;

use async_graphql::Context;
use sea_orm::DatabaseConnection;
use service::{Caller, engine::Engine};

use crate::error::{ApiError, ApiResult};

/// The outcome of reading the `Authorization` header, attached to every request.
#[derive(Clone, Debug)]
pub enum RequestAuth {
    /// A valid, unrevoked key.
    Authenticated(Caller),
    /// No `Authorization` header.
    Missing,
    /// A header that is malformed or names an unknown or revoked key.
    Invalid(String),
    /// The key could not be checked (database down); already logged.
    Unavailable,
}

/// Typed access to what resolvers need, returning proper errors instead of panicking.
pub trait ContextExt {
    /// The database pool.
    fn db(&self) -> ApiResult<&DatabaseConnection>;
    /// The authenticated caller, or UNAUTHENTICATED.
    fn caller(&self) -> ApiResult<&Caller>;
    /// The token engine (vault, providers, refresh locks).
    fn engine(&self) -> ApiResult<&Arc<Engine>>;
}

impl ContextExt for Context<'_> {
    fn db(&self) -> ApiResult<&DatabaseConnection> {
        self.data::<DatabaseConnection>().map_err(|_| {
            tracing::error!("database missing from the GraphQL context");
            ApiError::internal()
        })
    }

    fn engine(&self) -> ApiResult<&Arc<Engine>> {
        self.data::<Arc<Engine>>().map_err(|_| {
            tracing::error!("engine missing from the GraphQL context");
            ApiError::internal()
        })
    }

    fn caller(&self) -> ApiResult<&Caller> {
        match self.data::<RequestAuth>() {
            Ok(RequestAuth::Authenticated(caller)) => Ok(caller),
            Ok(RequestAuth::Invalid(message)) => Err(ApiError::unauthenticated(message.clone())),
            Ok(RequestAuth::Unavailable) => Err(ApiError::internal()),
            Ok(RequestAuth::Missing) | Err(_) => Err(ApiError::unauthenticated(
                "authentication required: send `Authorization: Bearer <api key>`",
            )),
        }
    }
}
