//! The `tokenEvents` use case: one subscriber's stream of its tenant's events. Stored events
//! are replayed first (after an event or since a time), then live ones follow from the bus
//! with no gap and no duplicate; a subscriber that falls behind is stopped with where to
//! resume; a revoked key or ended session stops the stream within seconds.
//!
//! Everything follows the commit order `seq` (see `events`): the stream keeps one number,
//! the highest position it has passed, instead of a set of delivered ids. A live event at
//! or below it was delivered already (or filtered out); one above the next position means
//! the bus delivered out of order (several publishers) or lost an event, and the
//! positions in between are read from the table first. Memory per subscriber is constant.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::token_event;
use futures::Stream;
use sea_orm::DatabaseConnection;
use tokio::sync::broadcast::error::RecvError;

use crate::{
    error::ServiceError,
    events::{self, EventBus, EventFilter, SeqRange},
    identity::{caller::Caller, sessions::SessionSettings},
};

/// How often a subscription re-checks that its API key or session is still valid.
const KEY_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Stored events read per replay query.
const REPLAY_BATCH: u64 = 500;

/// Where a subscription starts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Start {
    /// Replay the events that committed after this one (an event id).
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

/// The events `caller` receives with `filter` from `start` on, in commit order.
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
        let tenant = caller.tenant_id;
        // Every event at or below `passed` was delivered or did not match.
        let mut passed = match events::last_seq(&db).await {
            Ok(seq) => seq,
            Err(err) => {
                yield Err(Stopped::Failed(err));
                return;
            }
        };
        let mut last = start.after;
        if start.after.is_some() || start.since.is_some() {
            let after = match start.after {
                // An unknown id resumes after the position it would have had.
                Some(id) => match events::seq_of(&db, id).await {
                    Ok(seq) => Some(seq.unwrap_or(id)),
                    Err(err) => {
                        yield Err(Stopped::Failed(err));
                        return;
                    }
                },
                None => None,
            };
            let range = SeqRange { after, before: None };
            let mut replay = std::pin::pin!(read(&db, tenant, &filter, range, start.since));
            while let Some(event) = futures::StreamExt::next(&mut replay).await {
                match event {
                    Ok(event) => {
                        passed = passed.max(event.seq.unwrap_or(passed));
                        last = Some(event.id);
                        yield Ok(event);
                    }
                    Err(err) => {
                        yield Err(Stopped::Failed(err));
                        return;
                    }
                }
            }
        }
        let mut key_check = tokio::time::interval(KEY_CHECK_EVERY);
        key_check.tick().await;
        loop {
            tokio::select! {
                received = live.recv() => match received {
                    Ok(event) => {
                        let Some(seq) = event.seq else {
                            // Published without its position (could not be read): pass it on.
                            if filter.matches(tenant, &event) {
                                last = Some(event.id);
                                yield Ok(event);
                            }
                            continue;
                        };
                        if seq <= passed {
                            continue;
                        }
                        if seq > passed + 1 {
                            let range = SeqRange { after: Some(passed), before: Some(seq) };
                            let mut missed = std::pin::pin!(read(&db, tenant, &filter, range, start.since));
                            while let Some(event) = futures::StreamExt::next(&mut missed).await {
                                match event {
                                    Ok(event) => {
                                        last = Some(event.id);
                                        yield Ok(event);
                                    }
                                    Err(err) => {
                                        yield Err(Stopped::Failed(err));
                                        return;
                                    }
                                }
                            }
                        }
                        passed = seq;
                        if filter.matches(tenant, &event)
                            && start.since.is_none_or(|since| event.occurred_at >= since)
                        {
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

/// The stored events in `range`, in commit order, read in batches.
fn read<'a>(
    db: &'a DatabaseConnection,
    tenant: i64,
    filter: &'a EventFilter,
    range: SeqRange,
    since: Option<DateTime<Utc>>,
) -> impl Stream<Item = Result<token_event::Model, ServiceError>> + Send + 'a {
    async_stream::try_stream! {
        let mut range = range;
        loop {
            let batch = events::replay(db, tenant, filter, range, since, REPLAY_BATCH).await?;
            let done = (batch.len() as u64) < REPLAY_BATCH;
            for event in batch {
                range.after = event.seq;
                yield event;
            }
            if done {
                break;
            }
        }
    }
}
