//! Token events: written to the `token_events` outbox in the transaction of the change they
//! report, then published to subscribers: an in-process broadcast, relayed through Redis
//! pub/sub (under the deployment's prefix) when Redis is configured, so an event caused in
//! any process reaches subscribers on every node. The table is the source of truth:
//! subscribers replay from it after a reconnect, in commit order (`seq`, assigned as an
//! event's transaction commits, so a resume never skips an event that committed late).
//! Once-only events carry a unique `once_key`, so concurrent raisers insert one.

/// Error-rate alerts on provider calls.
pub mod alerts;
/// End-user notifications, one per incident.
pub mod notifications;
/// One subscriber's stream: replay, then live, no gap, no duplicate.
pub mod subscription;
/// Signed webhooks and their deliveries.
pub mod webhooks;

use std::{collections::HashMap, fmt};

use chrono::{DateTime, Utc};
use entity::token_event;
use futures::StreamExt;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use tokio::sync::broadcast;

use crate::{
    domain::Platform,
    error::{ServiceError, ServiceResult},
    tokens::failures::FailureView,
};

pub use entity::enums::EventKind;

/// An event about one account.
pub struct NewEvent<'a> {
    pub tenant_id: i64,
    pub account_id: i64,
    pub platform: Platform,
    pub kind: EventKind,
    pub error: Option<&'a FailureView>,
}

/// Appends an event; call it inside the transaction of the change it reports, and
/// `EventBus::publish` the returned row after the commit.
pub async fn record(
    db: &impl ConnectionTrait,
    event: NewEvent<'_>,
) -> ServiceResult<token_event::Model> {
    insert(db, account_event(event), None)
        .await?
        .ok_or_else(|| ServiceError::Internal("an event without a once key was not stored".into()))
}

/// Appends a once-only event (EXPIRING for one connection, and the like): the first insert
/// with `once_key` stores it, any other (a concurrent worker's, a retry's) does nothing and
/// returns `None`. Same transaction and publish rules as [`record`].
pub(crate) async fn record_once(
    db: &impl ConnectionTrait,
    event: NewEvent<'_>,
    once_key: String,
) -> ServiceResult<Option<token_event::Model>> {
    insert(db, account_event(event), Some(once_key)).await
}

/// Appends a deployment-wide event (provider health, key rotation): every tenant's
/// subscribers and webhooks receive it. Publish the returned row after the commit.
pub(crate) async fn record_global(
    db: &impl ConnectionTrait,
    kind: EventKind,
    platform: Option<Platform>,
    error: Option<&FailureView>,
) -> ServiceResult<token_event::Model> {
    insert(db, global_event(kind, platform, error), None)
        .await?
        .ok_or_else(|| ServiceError::Internal("an event without a once key was not stored".into()))
}

/// A once-only [`record_global`]: `None` when an event with `once_key` exists already.
pub async fn record_global_once(
    db: &impl ConnectionTrait,
    kind: EventKind,
    platform: Option<Platform>,
    error: Option<&FailureView>,
    once_key: String,
) -> ServiceResult<Option<token_event::Model>> {
    insert(db, global_event(kind, platform, error), Some(once_key)).await
}

fn account_event(event: NewEvent<'_>) -> token_event::ActiveModel {
    token_event::ActiveModel {
        tenant_id: Set(Some(event.tenant_id)),
        account_id: Set(Some(event.account_id)),
        kind: Set(event.kind),
        platform: Set(Some(event.platform)),
        error_code: Set(event.error.map(|e| e.code.to_owned())),
        error_message: Set(event.error.map(|e| e.message.clone())),
        error_action: Set(event.error.and_then(|e| e.action.clone())),
        occurred_at: Set(Utc::now()),
        ..Default::default()
    }
}

fn global_event(
    kind: EventKind,
    platform: Option<Platform>,
    error: Option<&FailureView>,
) -> token_event::ActiveModel {
    token_event::ActiveModel {
        tenant_id: Set(None),
        account_id: Set(None),
        kind: Set(kind),
        platform: Set(platform),
        error_code: Set(error.map(|e| e.code.to_owned())),
        error_message: Set(error.map(|e| e.message.clone())),
        error_action: Set(error.and_then(|e| e.action.clone())),
        occurred_at: Set(Utc::now()),
        ..Default::default()
    }
}

/// Inserts an event with its webhook deliveries (which commit or roll back with it).
/// With a `once_key` the insert does nothing when the key exists (`ON CONFLICT DO
/// NOTHING`: no error, so a PostgreSQL transaction stays usable) and `None` comes back.
async fn insert(
    db: &impl ConnectionTrait,
    mut event: token_event::ActiveModel,
    once_key: Option<String>,
) -> ServiceResult<Option<token_event::Model>> {
    let event = match once_key {
        None => event.insert(db).await?,
        Some(key) => {
            event.once_key = Set(Some(key));
            // `_many`: a conflict returns no row, which the single-row form reports as an
            // error.
            let inserted = token_event::Entity::insert(event)
                .on_conflict_do_nothing_on([token_event::Column::OnceKey])
                .exec_with_returning_many(db)
                .await?;
            match inserted {
                sea_orm::TryInsertResult::Inserted(rows) => match rows.into_iter().next() {
                    Some(event) => event,
                    None => return Ok(None),
                },
                _ => return Ok(None),
            }
        }
    };
    crate::events::webhooks::enqueue_for_event(db, &event).await?;
    Ok(Some(event))
}

/// Which events a subscriber wants; empty lists mean any.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub kinds: Vec<EventKind>,
    pub platforms: Vec<Platform>,
    pub account_ids: Vec<i64>,
}

impl EventFilter {
    /// Whether a tenant's subscriber with this filter gets `event`.
    pub fn matches(&self, tenant_id: i64, event: &token_event::Model) -> bool {
        event.tenant_id.is_none_or(|t| t == tenant_id)
            && (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && (self.platforms.is_empty()
                || event.platform.is_some_and(|p| self.platforms.contains(&p)))
            && (self.account_ids.is_empty()
                || event
                    .account_id
                    .is_some_and(|a| self.account_ids.contains(&a)))
    }
}

/// A range of commit positions (`seq`), both ends exclusive; `None` is open.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeqRange {
    pub after: Option<i64>,
    pub before: Option<i64>,
}

/// Stored events of a tenant (and deployment-wide ones) in `range` that happened at or
/// after `since`, in commit order, at most `limit`.
pub async fn replay(
    db: &impl ConnectionTrait,
    tenant_id: i64,
    filter: &EventFilter,
    range: SeqRange,
    since: Option<DateTime<Utc>>,
    limit: u64,
) -> ServiceResult<Vec<token_event::Model>> {
    let mut select = token_event::Entity::find()
        .filter(
            sea_orm::Condition::any()
                .add(token_event::Column::TenantId.eq(tenant_id))
                .add(token_event::Column::TenantId.is_null()),
        )
        .filter(token_event::Column::Seq.is_not_null());
    if let Some(after) = range.after {
        select = select.filter(token_event::Column::Seq.gt(after));
    }
    if let Some(before) = range.before {
        select = select.filter(token_event::Column::Seq.lt(before));
    }
    if let Some(since) = since {
        select = select.filter(token_event::Column::OccurredAt.gte(since));
    }
    if !filter.kinds.is_empty() {
        select = select.filter(token_event::Column::Kind.is_in(filter.kinds.iter().copied()));
    }
    if !filter.platforms.is_empty() {
        select =
            select.filter(token_event::Column::Platform.is_in(filter.platforms.iter().copied()));
    }
    if !filter.account_ids.is_empty() {
        select =
            select.filter(token_event::Column::AccountId.is_in(filter.account_ids.iter().copied()));
    }
    Ok(select
        .order_by_asc(token_event::Column::Seq)
        .limit(limit)
        .all(db)
        .await?)
}

/// The commit position of event `id` (`None`: no such event, or not committed yet).
pub(crate) async fn seq_of(db: &impl ConnectionTrait, id: i64) -> ServiceResult<Option<i64>> {
    Ok(token_event::Entity::find_by_id(id)
        .select_only()
        .column(token_event::Column::Seq)
        .into_tuple::<Option<i64>>()
        .one(db)
        .await?
        .flatten())
}

/// Fills in the commit position of every event of `events` that has none yet, in one
/// query (callers pass one batch: at most [`crate::tokens::batch::MAX_BATCH`] events). An
/// event not committed yet keeps `None`.
pub(crate) async fn fill_seqs(
    db: &impl ConnectionTrait,
    events: &mut [token_event::Model],
) -> ServiceResult<()> {
    let missing: Vec<i64> = events
        .iter()
        .filter(|e| e.seq.is_none())
        .map(|e| e.id)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let seqs: HashMap<i64, Option<i64>> = token_event::Entity::find()
        .select_only()
        .column(token_event::Column::Id)
        .column(token_event::Column::Seq)
        .filter(token_event::Column::Id.is_in(missing))
        .into_tuple::<(i64, Option<i64>)>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    for event in events.iter_mut().filter(|e| e.seq.is_none()) {
        event.seq = seqs.get(&event.id).copied().flatten();
    }
    Ok(())
}

/// The highest commit position so far (0 with no events).
pub(crate) async fn last_seq(db: &impl ConnectionTrait) -> ServiceResult<i64> {
    Ok(token_event::Entity::find()
        .select_only()
        .column_as(token_event::Column::Seq.max(), "seq")
        .into_tuple::<Option<i64>>()
        .one(db)
        .await?
        .flatten()
        .unwrap_or(0))
}

/// Events buffered per subscriber before it counts as fallen behind.
pub const SUBSCRIBER_BUFFER: usize = 1024;

/// Fans events out to this process's subscribers, and through Redis to every process's.
#[derive(Clone)]
pub struct EventBus {
    local: broadcast::Sender<token_event::Model>,
    redis: Option<(redis::aio::ConnectionManager, String)>,
    /// Where `publish` reads the commit position of an event it is handed without one.
    store: Option<sea_orm::DatabaseConnection>,
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("redis", &self.redis.as_ref().map(|(_, channel)| channel))
            .finish()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::local()
    }
}

impl EventBus {
    /// An in-process bus (embedded mode).
    pub fn local() -> Self {
        let (local, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        Self {
            local,
            redis: None,
            store: None,
        }
    }

    /// Reads the commit position (`seq`) of published events from `db`: an inserted row
    /// comes back without it, and subscribers need it to merge, order and deduplicate.
    pub fn with_store(mut self, db: sea_orm::DatabaseConnection) -> Self {
        self.store = Some(db);
        self
    }

    /// A bus relayed through Redis pub/sub on `<prefix>:token-events`. Starts the relay
    /// task that feeds this process's subscribers (reconnecting when Redis drops).
    pub async fn with_redis(url: &str, prefix: &str) -> ServiceResult<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| ServiceError::Internal(format!("redis url: {e}")))?;
        let publisher = client
            .get_connection_manager()
            .await
            .map_err(|e| ServiceError::Internal(format!("connecting to Redis: {e}")))?;
        let channel = format!("{prefix}:token-events");
        let (local, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        let relay = local.clone();
        let relay_channel = channel.clone();
        tokio::spawn(async move {
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => {
                        if pubsub.subscribe(&relay_channel).await.is_ok() {
                            let mut messages = pubsub.on_message();
                            while let Some(message) = messages.next().await {
                                let Ok(payload) = message.get_payload::<String>() else {
                                    continue;
                                };
                                if let Ok(event) =
                                    serde_json::from_str::<token_event::Model>(&payload)
                                {
                                    let _ = relay.send(event);
                                }
                            }
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "event relay: Redis unreachable"),
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
        Ok(Self {
            local,
            redis: Some((publisher, channel)),
            store: None,
        })
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<token_event::Model> {
        self.local.subscribe()
    }

    /// Publishes a committed event. Failures are logged: the event is in the table, and
    /// subscribers catch up by replaying it.
    pub async fn publish(&self, event: token_event::Model) {
        self.publish_many(vec![event]).await;
    }

    /// Publishes committed events in order: on Redis as one pipeline (one round trip for
    /// the whole batch, not one per event: a refresh batch of 200 events used to spend
    /// most of its time here). Failures are logged: the events are in the table, and
    /// subscribers catch up by replaying them.
    pub async fn publish_many(&self, mut events: Vec<token_event::Model>) {
        if events.is_empty() {
            return;
        }
        if let Some(db) = &self.store
            && let Err(err) = fill_seqs(db, &mut events).await
        {
            tracing::warn!(error = %err, events = events.len(), "could not read events' commit positions");
        }
        match &self.redis {
            Some((conn, channel)) => {
                let mut pipe = redis::pipe();
                for event in &events {
                    match serde_json::to_string(event) {
                        Ok(payload) => {
                            pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
                        }
                        Err(err) => {
                            tracing::error!(error = %err, event_id = event.id, "could not encode an event");
                        }
                    }
                }
                let mut conn = conn.clone();
                let sent: Result<(), _> = pipe.query_async(&mut conn).await;
                if let Err(err) = sent {
                    tracing::warn!(error = %err, events = events.len(), "could not publish events to Redis");
                }
            }
            None => {
                for event in events {
                    let _ = self.local.send(event);
                }
            }
        }
    }
}
