use async_graphql::{Context, Enum, ID, InputObject, Object, Subscription};
use chrono::{DateTime, Utc};
use entity::token_event;
use futures::{Stream, StreamExt};
use service::events::{EventFilter, subscription};

use crate::{
    error::{ApiError, ApiResult},
    graphql::{
        accounts::{self, Platform, SocialAccount},
        connections::TokenError,
        context::ContextExt,
        ids,
    },
};

/// The global-id type name of events.
pub(crate) const KIND: &str = "TokenEvent";

/// What happened.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::events::EventKind")]
pub enum TokenEventKind {
    Connected,
    Refreshed,
    /// A transient failure; the refresh will be retried.
    RefreshFailed,
    /// The grant is dead: the user must reconnect.
    ReconnectRequired,
    /// A token that cannot be extended expires soon.
    Expiring,
    Expired,
    Disconnected,
    KeyRotationDue,
    ProviderDegraded,
    ProviderRecovered,
    /// A scheduled backup failed or did not verify (deployment-wide).
    BackupFailed,
    /// No backup was verified for longer than TOKENWARDEN_BACKUP_OVERDUE (deployment-wide).
    BackupOverdue,
    /// The database grew more than TOKENWARDEN_DB_GROWTH_ALERT within the growth window
    /// (deployment-wide).
    DatabaseGrowth,
}

/// One token event.
pub struct TokenEvent(pub token_event::Model);

#[Object]
impl TokenEvent {
    /// Global id; pass it as `after` to resume a subscription.
    async fn id(&self) -> ID {
        ids::encode(KIND, self.0.id)
    }

    async fn kind(&self) -> TokenEventKind {
        self.0.kind.into()
    }

    async fn occurred_at(&self) -> DateTime<Utc> {
        self.0.occurred_at
    }

    async fn platform(&self) -> Option<Platform> {
        self.0.platform.map(Into::into)
    }

    /// The account, as it is now.
    async fn account(&self, ctx: &Context<'_>) -> ApiResult<Option<SocialAccount>> {
        let (Some(tenant), Some(account)) = (self.0.tenant_id, self.0.account_id) else {
            return Ok(None);
        };
        Ok(
            service::connections::accounts::find(ctx.db()?, tenant, account)
                .await?
                .map(SocialAccount::from),
        )
    }

    /// What went wrong and what to do, for failure events.
    async fn error(&self) -> Option<TokenError> {
        self.0.error_code.as_ref().map(|code| TokenError {
            code: code.clone(),
            message: self.0.error_message.clone().unwrap_or_default(),
            action: self.0.error_action.clone(),
            retry_after_seconds: None,
        })
    }
}

/// Which events to receive; omitted fields mean any.
#[derive(InputObject, Default)]
pub struct TokenEventFilter {
    pub kinds: Option<Vec<TokenEventKind>>,
    pub platforms: Option<Vec<Platform>>,
    pub account_ids: Option<Vec<ID>>,
}

impl TryFrom<TokenEventFilter> for EventFilter {
    type Error = ApiError;

    fn try_from(f: TokenEventFilter) -> ApiResult<Self> {
        Ok(EventFilter {
            kinds: f
                .kinds
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            platforms: f
                .platforms
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            account_ids: f
                .account_ids
                .unwrap_or_default()
                .iter()
                .map(|id| ids::decode(id, accounts::KIND))
                .collect::<ApiResult<_>>()?,
        })
    }
}

/// Token event subscriptions.
#[derive(Default)]
pub struct EventsSubscription;

#[Subscription]
impl EventsSubscription {
    /// The tenant's token events as they happen (VIEWER and up). With `after` (an event
    /// id) or `since`, stored events are replayed first, then live ones follow with no gap
    /// and no duplicate. A subscriber that falls behind gets a SUBSCRIBER_LAGGED error
    /// naming the `after` to resubscribe with.
    async fn token_events(
        &self,
        ctx: &Context<'_>,
        filter: Option<TokenEventFilter>,
        after: Option<ID>,
        since: Option<DateTime<Utc>>,
    ) -> Result<impl Stream<Item = Result<TokenEvent, ApiError>> + use<>, ApiError> {
        let caller = ctx.caller()?.clone();
        let db = ctx.db()?.clone();
        let engine = ctx.engine()?.clone();
        let sessions = ctx
            .data::<service::identity::sessions::SessionSettings>()
            .copied()
            .unwrap_or_default();
        let filter: EventFilter = filter.unwrap_or_default().try_into()?;
        let after = after.map(|id| ids::decode(&id, KIND)).transpose()?;
        let start = subscription::Start { after, since };
        let events = subscription::stream(db, &engine.events, caller, sessions, filter, start);
        Ok(events.map(|item| item.map(TokenEvent).map_err(stopped)))
    }
}

/// What the subscriber sees when its stream stops.
fn stopped(why: subscription::Stopped) -> ApiError {
    match why {
        subscription::Stopped::Lagged { last } => {
            let resume = last
                .map(|id| format!("after: \"{}\"", ids::encode(KIND, id).as_str()))
                .unwrap_or_else(|| "since: <the time you subscribed>".to_owned());
            ApiError::new(
                "SUBSCRIBER_LAGGED",
                format!("this subscription fell behind and was stopped; resubscribe with {resume}"),
            )
        }
        subscription::Stopped::Revoked => ApiError::unauthenticated(
            "the API key of this subscription was revoked or its session ended",
        ),
        subscription::Stopped::Failed(err) => ApiError::from(err),
    }
}

/// The global-id type name of notifications.
pub(crate) const NOTIFICATION_KIND: &str = "Notification";

/// A signed reconnect link (see `Notification.reconnectLink`).
#[derive(async_graphql::SimpleObject)]
pub struct ReconnectLink {
    /// The link to send to the account's owner (it opens on this server, which then
    /// starts the connection and redirects to the platform).
    pub authorization_url: String,
    /// After this the link is refused (`RECONNECT_LINK_EXPIRED`).
    pub expires_at: DateTime<Utc>,
}

/// What a notification is about.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "entity::enums::Incident")]
pub enum Incident {
    /// The grant is dead: the user must reconnect.
    ReconnectRequired,
    /// The token expired before it could be refreshed: the user must reconnect.
    Expired,
    /// Refreshes keep failing transiently; nothing for the user to do yet.
    RefreshFailing,
}

/// A message for the account's owner: what happened and what to do. One per incident.
pub struct Notification(pub entity::notification::Model);

#[Object]
impl Notification {
    async fn id(&self) -> ID {
        ids::encode(NOTIFICATION_KIND, self.0.id)
    }

    async fn incident(&self) -> Incident {
        self.0.incident.into()
    }

    async fn platform(&self) -> Option<Platform> {
        Some(self.0.platform.into())
    }

    /// E.g. "Instagram access for @shop stopped working because the password was changed."
    async fn message(&self) -> &str {
        &self.0.message
    }

    /// E.g. "Reconnect the account."
    async fn action(&self) -> Option<&str> {
        self.0.action.as_deref()
    }

    /// Whether the fix is a reconnect: call `startConnection` with this platform and send
    /// the user to its `authorizationUrl`.
    async fn reconnect_required(&self) -> bool {
        self.0.incident != entity::enums::Incident::RefreshFailing
    }

    /// A reconnect link for an open reconnect incident (INTEGRATOR), to send to the
    /// account's owner; null otherwise. A signed URL on this server, valid for 72 hours:
    /// reading it writes nothing, opening it starts the reconnection then (and sends the
    /// browser to the platform). See docs/connections.md#reconnect-links.
    async fn reconnect_link(
        &self,
        ctx: &Context<'_>,
        redirect_after: Option<String>,
    ) -> ApiResult<Option<ReconnectLink>> {
        Ok(service::connections::links::for_notification(
            ctx.engine()?,
            ctx.caller()?,
            &self.0,
            redirect_after,
            Utc::now(),
        )?
        .map(|link| ReconnectLink {
            authorization_url: link.url,
            expires_at: link.expires_at,
        }))
    }

    async fn account(&self, ctx: &Context<'_>) -> ApiResult<Option<SocialAccount>> {
        Ok(
            service::connections::accounts::find(ctx.db()?, self.0.tenant_id, self.0.account_id)
                .await?
                .map(SocialAccount::from),
        )
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn acknowledged_at(&self) -> Option<DateTime<Utc>> {
        self.0.acknowledged_at
    }

    /// When the account worked again, closing the incident.
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.0.resolved_at
    }
}

/// Notification queries.
#[derive(Default)]
pub struct NotificationsQuery;

#[Object]
impl NotificationsQuery {
    /// The tenant's notifications, newest first; `unread: true` keeps unacknowledged ones.
    #[graphql(
        complexity = "crate::graphql::limits::connection_cost(first, last, child_complexity)"
    )]
    async fn notifications(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        unread: Option<bool>,
    ) -> async_graphql::Result<
        crate::graphql::paging::IdConnection<Notification, async_graphql::connection::EmptyFields>,
    > {
        let db = ctx.db()?;
        let caller = ctx.caller()?;
        crate::graphql::paging::relay(
            after,
            before,
            first,
            last,
            async_graphql::connection::EmptyFields,
            |n: &Notification| n.0.id,
            |page| async move {
                Ok(
                    service::events::notifications::list(db, caller, unread, page)
                        .await?
                        .map(Notification),
                )
            },
        )
        .await
    }
}

/// Notification mutations.
#[derive(Default)]
pub struct NotificationsMutation;

#[Object]
impl NotificationsMutation {
    /// Marks a notification as read.
    async fn acknowledge_notification(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Notification> {
        let row = ids::decode(&id, NOTIFICATION_KIND)?;
        Ok(Notification(
            service::events::notifications::acknowledge(ctx.db()?, ctx.caller()?, row).await?,
        ))
    }
}
