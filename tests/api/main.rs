//! End-to-end tests: the real server on port 0, real HTTP, a fresh database per test on
//! SQLite and on the local PostgreSQL. One binary, so everything compiles once.

mod helpers;

mod accounts;
mod analytics;
mod api_keys;
mod audit;
mod auth;
mod backups;
mod binary;
mod browser_binding;
mod callbacks;
mod classification;
mod connections;
mod dashboard;
mod database;
mod events;
mod failover;
mod http;
mod http_secrets;
mod jobs;
mod limits;
mod operator;
mod pkce;
mod protocols;
mod rate_limits;
mod reconnect_links;
mod refresh_batch;
mod rotation;
mod schema;
mod ssrf;
mod sweep_scale;
mod token_rejected;
mod users;
mod webhooks;
mod workers;
