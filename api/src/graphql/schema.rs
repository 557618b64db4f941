use std::sync::Arc;

use async_graphql::{MergedObject, Schema, SchemaBuilder};
use sea_orm::DatabaseConnection;
use service::engine::Engine;

use crate::{
    graphql::{
        accounts::{AccountsMutation, AccountsQuery},
        admin::{AdminMutation, AdminQuery},
        analytics::AnalyticsQuery,
        app_config::AppConfigQuery,
        audit::AuditQuery,
        connections::{ConnectionsMutation, ConnectionsQuery},
        events::{EventsSubscription, NotificationsMutation, NotificationsQuery},
        health::HealthQuery,
        maintenance::{MaintenanceMutation, MaintenanceQuery},
        node::NodeQuery,
        rejections::RejectionsMutation,
        users::UsersQuery,
        viewer::ViewerQuery,
        webhooks::{WebhooksMutation, WebhooksQuery},
    },
    settings::ApiConfig,
};

/// Every query, merged from the domain files.
#[derive(MergedObject, Default)]
pub struct Query(
    ViewerQuery,
    NodeQuery,
    AccountsQuery,
    ConnectionsQuery,
    AuditQuery,
    AdminQuery,
    HealthQuery,
    MaintenanceQuery,
    AnalyticsQuery,
    NotificationsQuery,
    WebhooksQuery,
    UsersQuery,
    AppConfigQuery,
);

/// Every mutation, merged from the domain files.
#[derive(MergedObject, Default)]
pub struct Mutation(
    AccountsMutation,
    ConnectionsMutation,
    RejectionsMutation,
    AdminMutation,
    MaintenanceMutation,
    NotificationsMutation,
    WebhooksMutation,
);

/// The application schema.
pub type AppSchema = Schema<Query, Mutation, EventsSubscription>;

fn builder() -> SchemaBuilder<Query, Mutation, EventsSubscription> {
    Schema::build(Query::default(), Mutation::default(), EventsSubscription)
}

/// Builds the served schema with the configured limits and hardening.
pub(crate) fn build_schema(
    db: DatabaseConnection,
    engine: Arc<Engine>,
    queue: jobs::Queue,
    config: &ApiConfig,
) -> AppSchema {
    let mut builder = builder()
        .data(db)
        .data(engine)
        .data(queue)
        .data(config.jobs.clone())
        .data(config.oauth_app.clone())
        .data(config.session)
        .limit_depth(config.limits.max_query_depth)
        .extension(crate::graphql::limits::CostLimits {
            max_complexity: config.limits.max_query_complexity,
            max_root_fields: config.limits.max_root_fields,
            max_aliases: config.limits.max_aliases,
            max_string_bytes: config.limits.max_string_bytes,
        })
        .limit_recursive_depth(64)
        .limit_directives(16);
    if !config.introspection {
        builder = builder.disable_introspection();
    }
    if !config.suggestions {
        builder = builder.disable_suggestions();
    }
    builder.finish()
}

/// The SDL, as committed in `schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}
