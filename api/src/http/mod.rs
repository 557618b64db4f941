//! HTTP routes. `graphql` speaks GraphQL over HTTP; `health` answers probes; `ui` serves
//! the dashboard and GraphiQL.

/// `/auth/sign-in`, `/auth/sign-out`, `/auth/session`: dashboard sessions.
pub mod auth;
/// Inbound platform callbacks under `/providers/...`.
mod callbacks;
/// `POST/GET /graphql` and `/graphql/ws`.
mod graphql;
/// `/healthz` and `/readyz`.
mod health;
/// `GET /oauth/start/{secret}`, `/oauth/reconnect/{token}` and `/oauth/callback/{platform}`.
mod oauth;
/// Request ids and access logs.
mod observe;
/// The server loop: connection cap, header-read and idle timeouts.
pub mod server;
/// The embedded dashboard (`/`) and GraphiQL (`/graphiql`).
mod ui;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{get, post},
};

use crate::app::AppState;
pub use graphql::ViaGet;
pub use health::Probes;

/// Only the probes, for processes that serve no API (`tokenwarden worker`).
pub(crate) fn probe_router(probes: Probes) -> Router {
    observe::layer(
        Router::new()
            .route("/healthz", get(health::healthz))
            .route("/readyz", get(health::readyz))
            .route("/metrics", get(health::metrics))
            .with_state(probes),
    )
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.limits.max_body_bytes;
    let mut router = Router::new()
        .route(
            "/graphql",
            get(graphql::get_handler).post(graphql::post_handler),
        )
        .route("/graphql/ws", get(graphql::subscriptions))
        .route("/auth/sign-in", post(auth::sign_in))
        .route("/auth/sign-out", post(auth::sign_out))
        .route("/auth/session", get(auth::session))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/oauth/callback/{platform}", get(oauth::callback))
        .route("/oauth/reconnect/{token}", get(oauth::reconnect))
        .route("/oauth/start/{secret}", get(oauth::start))
        .route(
            "/providers/tiktok/webhook",
            axum::routing::post(callbacks::tiktok_webhook),
        )
        .route(
            "/providers/instagram/deauthorize",
            axum::routing::post(callbacks::instagram_deauthorize),
        )
        .route(
            "/providers/instagram/data-deletion",
            axum::routing::post(callbacks::instagram_data_deletion),
        )
        .route(
            "/providers/instagram/data-deletion/status",
            get(callbacks::deletion_status),
        );
    let graphiql = state.config.graphiql_enabled();
    router = router.route("/", get(ui::index)).route(
        "/assets/{*path}",
        get(move |path, headers| ui::asset(graphiql, path, headers)),
    );
    if graphiql {
        router = router.route("/graphiql", get(ui::graphiql));
    }
    observe::layer(
        router
            .layer(DefaultBodyLimit::max(body_limit))
            .with_state(state),
    )
}
