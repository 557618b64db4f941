//! The `tokenEvents` use case: one subscriber's stream of its tenant's events. Stored events
//! are replayed first (after an event or since a time), then live ones follow from the bus
//! with no gap and no duplicate; a subscriber that falls behind is stopped with where to
//! resume; a revoked key or ended session stops the stream within seconds.

use std::{collections::HashSet, time::Duration};

use chrono::{DateTime, Utc};
use entity::token_event;
use futures::Stream;
use sea_orm::DatabaseConnection;
use tokio::sync::broadcast::error::RecvError;

use crate::{
    error::ServiceError,
    events::{self, EventBus, EventFilter},
    identity::{caller::Caller, sessions::SessionSettings},
};

/// How often a subscription re-checks that its API key or session is still valid.
const KEY_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Stored events read per replay query.
const REPLAY_BATCH: u64 = 500;

/// Where a subscription starts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Start {
    /// Replay the events after this one (an event id).
    pub after: Option<i64>,
    /// Replay the events that happened at or after this time.
    pub since: Option<DateTime<Utc>>,
}

/// Why a subscription stopped; each ends the stream.
#[derive(Debug)]
pub enum Stopped {
    /// The subscriber fell behind the live stream. `last` is the last event it was sent
    /// (resume after it), `None` when nothing was sent yet.
    Lagged { last: Option<i64> },
    /// The API key was revoked or the session ended.
    Revoked,
    /// Reading the stored events failed.
    Failed(ServiceError),
}

/// The events `caller` receives with `filter` from `start` on, oldest first.
pub fn stream(
    db: DatabaseConnection,
    bus: &EventBus,
    caller: Caller,
    sessions: SessionSettings,
    filter: EventFilter,
    start: Start,
) -> impl Stream<Item = Result<token_event::Model, Stopped>> + Send + use<> {
    // Subscribe before reading the table: nothing committed meanwhile is missed.
    let mut live = bus.subscribe();
    async_stream::stream! {
        let mut last = start.after;
        let mut replayed = HashSet::new();
        if start.after.is_some() || start.since.is_some() {
            let mut cursor = start.after;
            loop {
                let batch = match events::replay(&db, caller.tenant_id, &filter, cursor, start.since, REPLAY_BATCH).await {
                    Ok(batch) => batch,
                    Err(err) => {
                        yield Err(Stopped::Failed(err));
                        return;
                    }
                };
                let done = (batch.len() as u64) < REPLAY_BATCH;
                for event in batch {
                    cursor = Some(event.id);
                    last = Some(event.id);
                    replayed.insert(event.id);
                    yield Ok(event);
                }
                if done {
                    break;
                }
            }
        }
        let mut key_check = tokio::time::interval(KEY_CHECK_EVERY);
        key_check.tick().await;
        loop {
            tokio::select! {
                received = live.recv() => match received {
                    Ok(event) => {
                        if filter.matches(caller.tenant_id, &event) && !replayed.contains(&event.id) {
                            last = Some(event.id);
                            yield Ok(event);
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        yield Err(Stopped::Lagged { last });
                        return;
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = key_check.tick() => {
                    if !crate::identity::sessions::still_active(&db, &sessions, &caller).await.unwrap_or(true) {
                        yield Err(Stopped::Revoked);
                        return;
                    }
                }
            }
        }
    }
}
