use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::{enums::DeliveryStatus, webhook, webhook_delivery};
use secrecy::ExposeSecret;
use service::events::webhooks;

use crate::{
    error::ApiResult,
    graphql::{
        context::ContextExt,
        events::TokenEventKind,
        ids,
        paging::{self, IdConnection},
    },
};

/// The global-id type name of webhooks.
pub(crate) const KIND: &str = "Webhook";
/// The global-id type name of deliveries.
pub(crate) const DELIVERY_KIND: &str = "WebhookDelivery";

/// A registered webhook.
pub struct Webhook(pub webhook::Model);

#[Object]
impl Webhook {
    async fn id(&self) -> ID {
        ids::encode(KIND, self.0.id)
    }
    async fn url(&self) -> &str {
        &self.0.url
    }
    /// The event kinds sent (empty: all).
    async fn kinds(&self) -> Vec<TokenEventKind> {
        self.0
            .kinds
            .split(',')
            .filter_map(|k| k.parse::<service::events::EventKind>().ok())
            .map(Into::into)
            .collect()
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// Since when every delivery has failed.
    async fn failing_since(&self) -> Option<DateTime<Utc>> {
        self.0.failing_since
    }
    /// Set when it failed for 24 hours; nothing is sent any more.
    async fn disabled_at(&self) -> Option<DateTime<Utc>> {
        self.0.disabled_at
    }
}

/// One event sent (or being sent) to one webhook.
pub struct WebhookDelivery(pub webhook_delivery::Model);

#[Object]
impl WebhookDelivery {
    /// Also sent as the `Tokenwarden-Delivery` header, for idempotency.
    async fn id(&self) -> ID {
        ids::encode(DELIVERY_KIND, self.0.id)
    }
    async fn event_id(&self) -> ID {
        ids::encode(crate::graphql::events::KIND, self.0.event_id)
    }
    /// PENDING, DELIVERED or FAILED.
    async fn status(&self) -> &str {
        self.0.status.as_str()
    }
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }
    async fn last_status_code(&self) -> Option<i32> {
        self.0.last_status_code
    }
    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }
    async fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        (self.0.status == DeliveryStatus::Pending).then_some(self.0.next_attempt_at)
    }
    async fn delivered_at(&self) -> Option<DateTime<Utc>> {
        self.0.delivered_at
    }
}

/// Input of `registerWebhook`.
#[derive(InputObject)]
pub struct RegisterWebhookInput {
    /// Public http(s) URL.
    pub url: String,
    /// Event kinds to send; omitted or empty: all.
    pub kinds: Option<Vec<TokenEventKind>>,
    pub description: Option<String>,
}

/// The new webhook; `secret` signs its deliveries and is shown only this once.
#[derive(SimpleObject)]
pub struct RegisterWebhookPayload {
    pub webhook: Webhook,
    pub secret: String,
}

/// Webhook queries (ADMIN).
#[derive(Default)]
pub struct WebhooksQuery;

#[Object]
impl WebhooksQuery {
    /// The tenant's webhooks.
    #[graphql(
        complexity = "crate::graphql::limits::connection_cost(first, last, child_complexity)"
    )]
    async fn webhooks(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<IdConnection<Webhook, async_graphql::connection::EmptyFields>> {
        let db = ctx.db()?;
        let caller = ctx.caller()?;
        paging::relay(
            after,
            before,
            first,
            last,
            async_graphql::connection::EmptyFields,
            |w: &Webhook| w.0.id,
            |page| async move { Ok(webhooks::list(db, caller, page).await?.map(Webhook)) },
        )
        .await
    }

    /// A webhook's deliveries, newest first.
    #[graphql(
        complexity = "crate::graphql::limits::connection_cost(first, None, child_complexity)"
    )]
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        webhook_id: ID,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<IdConnection<WebhookDelivery, async_graphql::connection::EmptyFields>>
    {
        let db = ctx.db()?;
        let caller = ctx.caller()?;
        let row = ids::decode(&webhook_id, KIND)?;
        paging::relay(
            after,
            None,
            first,
            None,
            async_graphql::connection::EmptyFields,
            |d: &WebhookDelivery| d.0.id,
            |page| async move {
                Ok(webhooks::deliveries(db, caller, row, page)
                    .await?
                    .map(WebhookDelivery))
            },
        )
        .await
    }
}

/// Webhook mutations (ADMIN).
#[derive(Default)]
pub struct WebhooksMutation;

#[Object]
impl WebhooksMutation {
    /// Registers a webhook. Private, loopback, link-local and metadata targets are refused
    /// (after DNS resolution) unless TOKENWARDEN_WEBHOOK_ALLOW_PRIVATE is set.
    async fn register_webhook(
        &self,
        ctx: &Context<'_>,
        input: RegisterWebhookInput,
    ) -> ApiResult<RegisterWebhookPayload> {
        let kinds: Vec<service::events::EventKind> = input
            .kinds
            .unwrap_or_default()
            .into_iter()
            .map(Into::into)
            .collect();
        let registered = webhooks::register(
            ctx.db()?,
            ctx.engine()?,
            ctx.caller()?,
            &input.url,
            &kinds,
            input.description,
        )
        .await?;
        Ok(RegisterWebhookPayload {
            webhook: Webhook(registered.webhook),
            secret: registered.secret.expose_secret().to_owned(),
        })
    }

    /// Deletes a webhook and its deliveries.
    async fn delete_webhook(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Webhook> {
        let row = ids::decode(&id, KIND)?;
        Ok(Webhook(
            webhooks::delete(ctx.db()?, ctx.caller()?, row).await?,
        ))
    }
}
