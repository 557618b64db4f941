//! Group commit of the refresh path's database work: concurrent refreshes of one process
//! hand their reads and writes to a [`Combiner`], which runs them as one statement (the
//! account-and-token load a queued refresh starts with, leases, attempt rows) or one
//! transaction (stored tokens) per batch instead of one per refresh.
//!
//! Batches form by themselves: while one batch is being written, the next requests wait in
//! line and go together as soon as it is done; a lone request is written at once, so an
//! idle process adds no latency. Every request still gets its own answer: a compare-and-swap
//! that fails for one row fails for that row only.
//!
//! The guarantees of the single-row path stay: a token row is only written at the version
//! its refresh started from (compare-and-swap), the lease is only taken when free, the
//! account's status, the audit entry, the event and the notification commit in the same
//! transaction as the tokens, and an account deactivated or disconnected meanwhile keeps
//! its status (its tokens are stored, not served). When a batch transaction fails, every
//! request of it gets the error, and [`super::refresh`] journals its result and retries it
//! on its own (so one bad row cannot hold the others back).

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Mutex,
};

use chrono::Utc;
use entity::{
    audit_log, notification, oauth_token, refresh_attempt, social_account, token_event, webhook,
    webhook_delivery,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Set, Statement,
    TransactionSession, TransactionTrait, Value, sea_query::Expr,
};
use serde_json::json;
use tokio::sync::oneshot;

use crate::{
    connections::accounts::TARGET,
    domain::AccountStatus,
    engine::Engine,
    error::{ServiceError, ServiceResult},
    events::{EventBus, EventKind},
    identity::audit::{AuditAction, Target},
    identity::caller::Actor,
    tokens::{attempts::NewAttempt, journal::PendingTokens},
};

/// The most requests one batch carries: bounds every statement's parameter list (the
/// token update binds 9 values per row, far below SQLite's 32 766 and PostgreSQL's 65 535).
pub const MAX_BATCH: usize = 200;

/// What a waiting request is told.
enum Turn<O> {
    /// Its batch was written: the answer.
    Done(O),
    /// The previous writer is finished and this request is first in line: it writes the
    /// next batch itself.
    Lead,
}

struct Waiting<I, O> {
    item: I,
    /// `None` once the request was told to lead (it holds its own item's answer then).
    reply: Option<oneshot::Sender<Turn<O>>>,
    /// Distinguishes the leader's own request.
    ticket: u64,
}

struct Line<I, O> {
    waiting: VecDeque<Waiting<I, O>>,
    writing: bool,
    next_ticket: u64,
}

/// A line of write requests written in batches by whichever request is first in line
/// (no background task: the writer is always a caller that waits for its own answer).
pub struct Combiner<I, O> {
    line: Mutex<Line<I, O>>,
}

impl<I, O> Default for Combiner<I, O> {
    fn default() -> Self {
        Self {
            line: Mutex::new(Line {
                waiting: VecDeque::new(),
                writing: false,
                next_ticket: 0,
            }),
        }
    }
}

impl<I, O> std::fmt::Debug for Combiner<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Combiner")
    }
}

/// Hands the line on if a writer is dropped halfway (its task cancelled): the next request
/// leads, or the line is marked idle. The requests of the dropped batch get no answer
/// (their `oneshot` closes) and retry on their own.
struct Writing<'a, I, O> {
    line: &'a Mutex<Line<I, O>>,
    done: bool,
}

impl<I, O> Drop for Writing<'_, I, O> {
    fn drop(&mut self) {
        if !self.done {
            hand_on(self.line);
        }
    }
}

/// Makes the first request in line (that still waits) the writer, or marks the line idle.
/// Requests whose caller went away stay in line: the writer that finds them writes them.
fn hand_on<I, O>(line: &Mutex<Line<I, O>>) -> bool {
    let mut line = line.lock().unwrap_or_else(|p| p.into_inner());
    for waiting in line.waiting.iter_mut() {
        if let Some(reply) = waiting.reply.take()
            && reply.send(Turn::Lead).is_ok()
        {
            return true;
        }
    }
    if line.waiting.is_empty() {
        line.writing = false;
        return true;
    }
    // Only requests nobody waits for are left: the current writer writes them too.
    false
}

impl<I, O> Combiner<I, O> {
    /// Queues `item` and returns its answer once its batch is written. `write` gets up to
    /// `max` items in line order and returns one answer per item, in the same order.
    /// `None` when the batch's writer went away before answering (retry on your own).
    pub async fn submit<F, Fut>(&self, item: I, max: usize, write: F) -> Option<O>
    where
        F: Fn(Vec<I>) -> Fut,
        Fut: std::future::Future<Output = Vec<O>>,
    {
        let (reply, answer) = oneshot::channel();
        let (lead, ticket) = {
            let mut line = self.line.lock().unwrap_or_else(|p| p.into_inner());
            let ticket = line.next_ticket;
            line.next_ticket = line.next_ticket.wrapping_add(1);
            line.waiting.push_back(Waiting {
                item,
                reply: Some(reply),
                ticket,
            });
            let lead = !line.writing;
            line.writing = true;
            (lead, ticket)
        };
        if !lead {
            match answer.await {
                Ok(Turn::Done(out)) => return Some(out),
                Ok(Turn::Lead) => {}
                Err(_) => return None,
            }
        }
        let mut guard = Writing {
            line: &self.line,
            done: false,
        };
        let mut own = None;
        loop {
            let batch: Vec<Waiting<I, O>> = {
                let mut line = self.line.lock().unwrap_or_else(|p| p.into_inner());
                let n = line.waiting.len().min(max.max(1));
                line.waiting.drain(..n).collect()
            };
            let mut items = Vec::with_capacity(batch.len());
            let mut replies = Vec::with_capacity(batch.len());
            for waiting in batch {
                items.push(waiting.item);
                replies.push((waiting.reply, waiting.ticket));
            }
            let answers = write(items).await;
            for ((reply, t), out) in replies.into_iter().zip(answers) {
                if t == ticket {
                    own = Some(out);
                } else if let Some(reply) = reply {
                    let _ = reply.send(Turn::Done(out));
                }
            }
            if own.is_some() && hand_on(&self.line) {
                guard.done = true;
                return own;
            }
            if own.is_none()
                && self
                    .line
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .waiting
                    .is_empty()
            {
                // Cannot happen (the writer's own request is first in line); be safe.
                guard.done = hand_on(&self.line);
                return None;
            }
        }
    }
}

/// Numbered placeholders (`$n` on PostgreSQL, `?n` on SQLite), so a value may be used
/// twice and in any order.
struct Params {
    backend: DbBackend,
    values: Vec<Value>,
}

impl Params {
    fn new(backend: DbBackend) -> Self {
        Self {
            backend,
            values: Vec::new(),
        }
    }

    fn bind(&mut self, value: impl Into<Value>) -> String {
        self.values.push(value.into());
        match self.backend {
            DbBackend::Postgres => format!("${}", self.values.len()),
            _ => format!("?{}", self.values.len()),
        }
    }

    fn statement(self, sql: String) -> Statement {
        Statement::from_sql_and_values(self.backend, sql, self.values)
    }
}

/// A lease request: the token of `account_id` at `version`.
#[derive(Clone, Copy, Debug)]
pub struct LeaseRequest {
    pub account_id: i64,
    pub version: i64,
}

/// Takes the refresh lease of several tokens in one statement: each row only at its
/// version and only when its lease is free (as [`super::take_lease`]). Answers whether
/// each request now holds its lease.
pub async fn take_leases(
    db: &impl ConnectionTrait,
    requests: &[LeaseRequest],
    owner: &str,
    lease: std::time::Duration,
) -> ServiceResult<Vec<bool>> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let now = Utc::now();
    let until =
        now + chrono::Duration::from_std(lease).unwrap_or_else(|_| chrono::Duration::minutes(2));
    let mut p = Params::new(db.get_database_backend());
    let until = p.bind(Some(until));
    let owner = p.bind(Some(owner.to_owned()));
    let now = p.bind(Some(now));
    let rows: Vec<String> = requests
        .iter()
        .map(|r| format!("({}, {})", p.bind(r.account_id), p.bind(r.version)))
        .collect();
    let sql = format!(
        "UPDATE oauth_tokens SET refresh_lease_until = {until}, refresh_lease_owner = {owner} \
         FROM (VALUES {}) AS v \
         WHERE oauth_tokens.account_id = v.column1 AND oauth_tokens.version = v.column2 \
         AND (oauth_tokens.refresh_lease_until IS NULL OR oauth_tokens.refresh_lease_until < {now}) \
         RETURNING account_id",
        rows.join(", ")
    );
    let mut taken: HashSet<i64> = db
        .query_all_raw(p.statement(sql))
        .await?
        .iter()
        .filter_map(|row| row.try_get::<i64>("", "account_id").ok())
        .collect();
    // A lease is held once: should one account be asked for twice, only the first gets it.
    Ok(requests
        .iter()
        .map(|r| taken.remove(&r.account_id))
        .collect())
}

/// Takes the refresh lease of one token at `version` for this process, batched with the
/// other refreshes of the process that take theirs at the same time. `db` must be the
/// connection pool, never a transaction: the batch may carry other callers' requests.
pub async fn take_lease<D: ConnectionTrait>(
    engine: &Engine,
    db: &D,
    account_id: i64,
    version: i64,
) -> ServiceResult<bool> {
    let owner = engine.instance.as_str();
    let lease = engine.settings.refresh_lease;
    let request = LeaseRequest {
        account_id,
        version,
    };
    let answer = engine
        .leases
        .submit(request, MAX_BATCH, |items| async move {
            match take_leases(db, &items, owner, lease).await {
                Ok(taken) => taken.into_iter().map(Ok).collect(),
                Err(err) => {
                    let failed = BatchFailed(err.to_string());
                    items.iter().map(|_| Err(failed.clone())).collect()
                }
            }
        })
        .await;
    match answer {
        Some(Ok(taken)) => Ok(taken),
        Some(Err(failed)) => Err(batch_error(Some(failed))),
        None => super::take_lease(db, account_id, version, owner, lease).await,
    }
}

/// A queued refresh's request to load its account: `(tenant_id, account_id)`.
pub type LoadRequest = (i64, i64);

/// An account with its token row, as a queued refresh starts from them (`None`: the
/// account is gone, belongs to another tenant, or has no tokens).
pub type Loaded = Option<(social_account::Model, oauth_token::Model)>;

/// Loads several accounts with their token rows in one query (a join, at most
/// [`MAX_BATCH`] ids). Answers each request in order; an account of another tenant than
/// the one asked for is not found.
pub async fn load_many(
    db: &impl ConnectionTrait,
    requests: &[LoadRequest],
) -> ServiceResult<Vec<Loaded>> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let ids: HashSet<i64> = requests.iter().map(|&(_, id)| id).collect();
    let rows = social_account::Entity::find()
        .filter(social_account::Column::Id.is_in(ids))
        .find_also_related(oauth_token::Entity)
        .all(db)
        .await?;
    let found: HashMap<i64, (social_account::Model, oauth_token::Model)> = rows
        .into_iter()
        .filter_map(|(account, token)| Some((account.id, (account, token?))))
        .collect();
    Ok(requests
        .iter()
        .map(|&(tenant_id, id)| {
            found
                .get(&id)
                .filter(|(account, _)| account.tenant_id == tenant_id)
                .cloned()
        })
        .collect())
}

/// Loads one account of `tenant_id` with its token row, in one query with the other
/// queued refreshes of the process that start at the same time. `db` must be the
/// connection pool, never a transaction.
pub async fn load<D: ConnectionTrait>(
    engine: &Engine,
    db: &D,
    tenant_id: i64,
    account_id: i64,
) -> ServiceResult<Loaded> {
    let answer = engine
        .reads
        .submit((tenant_id, account_id), MAX_BATCH, |items| async move {
            match load_many(db, &items).await {
                Ok(loaded) => loaded.into_iter().map(Ok).collect(),
                Err(err) => {
                    let failed = BatchFailed(err.to_string());
                    items.iter().map(|_| Err(failed.clone())).collect()
                }
            }
        })
        .await;
    match answer {
        Some(Ok(loaded)) => Ok(loaded),
        Some(Err(BatchFailed(message))) => Err(ServiceError::Internal(format!(
            "loading a batch of accounts: {message}"
        ))),
        None => Ok(load_many(db, &[(tenant_id, account_id)])
            .await?
            .pop()
            .flatten()),
    }
}

/// Stores one refreshed result (as [`super::refresh`]'s single-row path does), batched
/// with the other results of the process stored at the same time. `db` must be the
/// connection pool, never a transaction.
pub async fn store<D>(
    engine: &Engine,
    db: &D,
    sealed: &PendingTokens,
    actor: &Actor,
) -> ServiceResult<Stored>
where
    D: ConnectionTrait + TransactionTrait,
{
    let request = StoreRequest {
        sealed: sealed.clone(),
        actor: actor.clone(),
    };
    let bus = &engine.events;
    let answer = engine
        .writes
        .submit(request, MAX_BATCH, |items| async move {
            store_refreshed_many(db, bus, &items).await
        })
        .await;
    match answer {
        Some(Ok(stored)) => Ok(stored),
        Some(Err(failed)) => Err(batch_error(Some(failed))),
        None => Err(batch_error(None)),
    }
}

/// Records a finished attempt (as [`super::attempts::record`]), in one insert with the
/// other attempts of the process that finish at the same time. `db` must be the
/// connection pool, never a transaction.
pub async fn record_attempt<D: ConnectionTrait>(
    engine: &Engine,
    db: &D,
    attempt: NewAttempt,
) -> ServiceResult<()> {
    let row = super::attempts::row(attempt, Utc::now());
    let answer = engine
        .attempts
        .submit(row, MAX_BATCH, |rows| async move {
            let n = rows.len();
            match refresh_attempt::Entity::insert_many(rows)
                .exec_without_returning(db)
                .await
            {
                Ok(_) => vec![Ok(()); n],
                Err(err) => vec![Err(BatchFailed(err.to_string())); n],
            }
        })
        .await;
    match answer {
        Some(Ok(())) => Ok(()),
        Some(Err(failed)) => Err(batch_error(Some(failed))),
        None => Err(batch_error(None)),
    }
}

/// One refresh result to store.
#[derive(Clone, Debug)]
pub struct StoreRequest {
    pub sealed: PendingTokens,
    pub actor: Actor,
}

/// What storing one result did: the account as it is now (`None` when the token row
/// changed under the refresh or is gone: a reconnect's tokens win).
pub type Stored = Option<social_account::Model>;

/// An error of a whole batch, shared by its requests.
#[derive(Clone, Debug)]
pub struct BatchFailed(pub String);

/// Stores a batch of refreshed tokens in one transaction: tokens (compare-and-swap per
/// row), account statuses, audit entries, `REFRESHED` events with their webhook
/// deliveries, resolved notifications; then publishes the events. Requests for an account
/// that appears earlier in the same batch are answered with an error (the caller retries
/// them alone; a process never stores two results of one account at once).
pub async fn store_refreshed_many<D>(
    db: &D,
    bus: &EventBus,
    requests: &[StoreRequest],
) -> Vec<Result<Stored, BatchFailed>>
where
    D: ConnectionTrait + TransactionTrait,
{
    match store_many(db, requests).await {
        Ok((answers, events)) => {
            bus.publish_many(events).await;
            answers
        }
        Err(err) => {
            let failed = BatchFailed(err.to_string());
            requests.iter().map(|_| Err(failed.clone())).collect()
        }
    }
}

type Answers = (Vec<Result<Stored, BatchFailed>>, Vec<token_event::Model>);

async fn store_many<D>(db: &D, requests: &[StoreRequest]) -> ServiceResult<Answers>
where
    D: ConnectionTrait + TransactionTrait,
{
    let backend = db.get_database_backend();
    let now = Utc::now();
    // First request of each account in this batch.
    let mut seen = HashSet::new();
    let unique: Vec<&StoreRequest> = requests
        .iter()
        .filter(|r| seen.insert(r.sealed.account_id))
        .collect();

    let txn = crate::db::begin(db).await?;
    // 1. The tokens, each only at the version its refresh started from.
    let mut p = Params::new(backend);
    let at = p.bind(Some(now));
    let rows: Vec<String> = unique
        .iter()
        .map(|r| {
            let s = &r.sealed;
            format!(
                "({}, {}, {}, {}, {}, {}, {}, {}, {})",
                p.bind(s.account_id),
                p.bind(s.version),
                p.bind(s.key_id.clone()),
                p.bind(s.access_enc.clone()),
                p.bind(s.refresh_enc.clone()),
                p.bind(s.expires_at),
                p.bind(s.refresh_expires_at),
                p.bind(s.issued_at),
                p.bind(s.scopes.join(",")),
            )
        })
        .collect();
    // Never overwrite a stored refresh token (or its expiry, or the scopes) with nothing.
    let sql = format!(
        "UPDATE oauth_tokens SET key_id = v.column3, access_token_enc = v.column4, \
         refresh_token_enc = COALESCE(v.column5, oauth_tokens.refresh_token_enc), \
         expires_at = v.column6, \
         refresh_expires_at = COALESCE(v.column7, oauth_tokens.refresh_expires_at), \
         issued_at = v.column8, \
         scopes = CASE WHEN v.column9 = '' THEN oauth_tokens.scopes ELSE v.column9 END, \
         last_refreshed_at = {at}, version = oauth_tokens.version + 1, \
         refresh_lease_until = NULL, refresh_lease_owner = NULL, next_refresh_at = NULL, \
         failure_count = 0, sweep_claimed_until = NULL, updated_at = {at} \
         FROM (VALUES {}) AS v \
         WHERE oauth_tokens.account_id = v.column1 AND oauth_tokens.version = v.column2 \
         RETURNING account_id",
        rows.join(", ")
    );
    let stored: HashSet<i64> = txn
        .query_all_raw(p.statement(sql))
        .await?
        .iter()
        .filter_map(|row| row.try_get::<i64>("", "account_id").ok())
        .collect();
    for request in &unique {
        if !stored.contains(&request.sealed.account_id) {
            tracing::warn!(
                account_id = request.sealed.account_id,
                "token row changed during refresh; keeping the newer tokens"
            );
        }
    }
    let stored_ids: Vec<i64> = unique
        .iter()
        .map(|r| r.sealed.account_id)
        .filter(|id| stored.contains(id))
        .collect();

    // 2. Served again: ACTIVE unless deactivated or disconnected meanwhile.
    let mut accounts: HashMap<i64, social_account::Model> = HashMap::new();
    let mut revived = HashSet::new();
    if !stored_ids.is_empty() {
        for account in social_account::Entity::update_many()
            .col_expr(
                social_account::Column::Status,
                Expr::value(AccountStatus::Active),
            )
            .col_expr(
                social_account::Column::StatusReason,
                Expr::value(Option::<String>::None),
            )
            .col_expr(social_account::Column::UpdatedAt, Expr::value(now))
            .filter(social_account::Column::Id.is_in(stored_ids.iter().copied()))
            .filter(
                social_account::Column::Status.is_in(crate::tokens::sweep::refreshable_statuses()),
            )
            .filter(social_account::Column::DeactivatedAt.is_null())
            .exec_with_returning(&txn)
            .await?
        {
            revived.insert(account.id);
            accounts.insert(account.id, account);
        }
        if accounts.len() < stored_ids.len() {
            let rest: Vec<i64> = stored_ids
                .iter()
                .copied()
                .filter(|id| !accounts.contains_key(id))
                .collect();
            for account in social_account::Entity::find()
                .filter(social_account::Column::Id.is_in(rest))
                .all(&txn)
                .await?
            {
                accounts.insert(account.id, account);
            }
        }
    }

    // 3. Audit entries, one per stored result.
    let mut audits = Vec::new();
    for request in &unique {
        let s = &request.sealed;
        let Some(account) = accounts.get(&s.account_id) else {
            continue;
        };
        let served = revived.contains(&account.id);
        if !served {
            tracing::info!(
                account_id = account.id,
                status = %account.status,
                "refreshed tokens stored; the account was deactivated or disconnected meanwhile, so they are not served"
            );
        }
        audits.push(crate::identity::audit::entry(
            &request.actor,
            AuditAction::TokenRefreshed,
            Some(Target::new(TARGET, account.id)),
            json!({
                "platform": account.platform,
                "expiresAt": s.expires_at,
                "refreshExpiresAt": s.refresh_expires_at,
                "served": served,
            }),
            now,
        ));
    }
    if !audits.is_empty() {
        audit_log::Entity::insert_many(audits)
            .exec_without_returning(&txn)
            .await?;
    }

    // 4. REFRESHED events (with their webhook deliveries) and resolved incidents of the
    // accounts that are served again.
    let mut events = Vec::new();
    let revived_ids: Vec<i64> = stored_ids
        .iter()
        .copied()
        .filter(|id| revived.contains(id))
        .collect();
    if !revived_ids.is_empty() {
        let mut rows = Vec::new();
        for id in &revived_ids {
            let Some(account) = accounts.get(id) else {
                continue;
            };
            rows.push(token_event::ActiveModel {
                tenant_id: Set(Some(account.tenant_id)),
                account_id: Set(Some(account.id)),
                kind: Set(EventKind::Refreshed),
                platform: Set(Some(account.platform)),
                error_code: Set(None),
                error_message: Set(None),
                error_action: Set(None),
                occurred_at: Set(now),
                ..Default::default()
            });
        }
        events = token_event::Entity::insert_many(rows)
            .exec_with_returning(&txn)
            .await?;
        deliveries_for(&txn, &events).await?;
        notification::Entity::update_many()
            .col_expr(notification::Column::ResolvedAt, Expr::value(Some(now)))
            .filter(notification::Column::AccountId.is_in(revived_ids.iter().copied()))
            .filter(notification::Column::ResolvedAt.is_null())
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;

    // Commit positions for the publish (assigned while committing on PostgreSQL); the
    // bus fills in any still missing.
    let _ = crate::events::fill_seqs(db, &mut events).await;

    let mut first = HashSet::new();
    let answers = requests
        .iter()
        .map(|r| {
            let id = r.sealed.account_id;
            if !first.insert(id) {
                return Err(BatchFailed(
                    "another result of this account was in the same batch".into(),
                ));
            }
            Ok(if stored.contains(&id) {
                accounts.get(&id).cloned()
            } else {
                None
            })
        })
        .collect();
    Ok((answers, events))
}

/// The webhook deliveries of several tenant events, in the events' transaction: one query
/// for the tenants' active webhooks, one insert for the deliveries.
async fn deliveries_for(
    db: &impl ConnectionTrait,
    events: &[token_event::Model],
) -> ServiceResult<()> {
    let tenants: HashSet<i64> = events.iter().filter_map(|e| e.tenant_id).collect();
    if tenants.is_empty() {
        return Ok(());
    }
    let hooks = webhook::Entity::find()
        .filter(webhook::Column::DisabledAt.is_null())
        .filter(webhook::Column::TenantId.is_in(tenants))
        .all(db)
        .await?;
    if hooks.is_empty() {
        return Ok(());
    }
    let mut rows = Vec::new();
    for event in events {
        for hook in hooks
            .iter()
            .filter(|h| Some(h.tenant_id) == event.tenant_id)
        {
            let wanted =
                hook.kinds.is_empty() || hook.kinds.split(',').any(|k| k == event.kind.as_str());
            if wanted {
                rows.push(crate::events::webhooks::delivery_row(hook, event));
            }
        }
    }
    for chunk in rows.chunks(MAX_BATCH) {
        webhook_delivery::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// When a result's batch failed or had no answer: the error to log before retrying alone.
pub fn batch_error(failed: Option<BatchFailed>) -> ServiceError {
    ServiceError::Internal(match failed {
        Some(BatchFailed(message)) => format!("storing a batch of refreshed tokens: {message}"),
        None => "the batch writer went away before answering".into(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    /// Doubles every item, recording the batch sizes; slow enough for a line to form.
    async fn double(items: Vec<u32>, sizes: &Mutex<Vec<usize>>) -> Vec<u32> {
        sizes.lock().expect("sizes").push(items.len());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        items.into_iter().map(|i| i * 2).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_batches_and_each_gets_its_own_answer() {
        let combiner = Arc::new(Combiner::<u32, u32>::default());
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..50u32)
            .map(|i| {
                let combiner = combiner.clone();
                let sizes = sizes.clone();
                tokio::spawn(async move {
                    combiner
                        .submit(i, 8, |items| {
                            let sizes = sizes.clone();
                            async move { double(items, &sizes).await }
                        })
                        .await
                })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            assert_eq!(task.await.expect("task"), Some(i as u32 * 2));
        }
        let sizes = sizes.lock().expect("sizes").clone();
        assert_eq!(sizes.iter().sum::<usize>(), 50, "every item written once");
        assert!(sizes.iter().all(|n| (1..=8).contains(n)), "{sizes:?}");
        assert!(sizes.len() < 50, "requests were batched: {sizes:?}");
        // The line is idle again: a lone request is written at once, alone.
        let lone = combiner
            .submit(7, 8, |items| async move {
                assert_eq!(items, vec![7]);
                vec![70]
            })
            .await;
        assert_eq!(lone, Some(70));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_that_goes_away_hands_the_line_on() {
        let combiner = Arc::new(Combiner::<u32, u32>::default());
        let started = Arc::new(tokio::sync::Notify::new());
        let writes = Arc::new(AtomicUsize::new(0));
        // The first writer hangs and is aborted halfway.
        let stuck = {
            let combiner = combiner.clone();
            let started = started.clone();
            tokio::spawn(async move {
                combiner
                    .submit(1, 8, |_| {
                        let started = started.clone();
                        async move {
                            started.notify_one();
                            std::future::pending::<Vec<u32>>().await
                        }
                    })
                    .await
            })
        };
        started.notified().await;
        // A second request waits in line meanwhile.
        let waiting = {
            let combiner = combiner.clone();
            let writes = writes.clone();
            tokio::spawn(async move {
                combiner
                    .submit(2, 8, |items| {
                        let writes = writes.clone();
                        async move {
                            writes.fetch_add(1, Ordering::SeqCst);
                            items.into_iter().map(|i| i * 10).collect()
                        }
                    })
                    .await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        stuck.abort();
        let answer = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the waiting request is not stuck")
            .expect("task");
        assert_eq!(answer, Some(20), "it wrote its own batch");
        assert_eq!(writes.load(Ordering::SeqCst), 1);
    }
}
