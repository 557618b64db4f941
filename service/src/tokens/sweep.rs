//! Finding tokens that are due for a refresh. Windows are *before* expiry: an expired
//! Instagram token can never be refreshed (the maintenance guide's sample selected expired
//! tokens; this does not). Claims make concurrent sweeps enqueue each account once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{oauth_token, social_account};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, ExprTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Set, TransactionSession, TransactionTrait,
    sea_query::Expr,
};
use serde_json::json;

use crate::{
    connections::accounts::{self, AccountFilter, TARGET},
    domain::{AccountStatus, Platform},
    error::{ServiceError, ServiceResult},
    events::{self, EventBus, EventKind, NewEvent},
    identity::audit::{self, AuditAction, Target},
    identity::caller::{Actor, Caller, Role},
    tokens::failures::FailureView,
    tokens::queue::{JobQueue, QueuedRefresh, Trigger},
};

/// Instagram refuses to refresh tokens younger than this.
pub(crate) const INSTAGRAM_MIN_AGE: chrono::Duration = chrono::Duration::hours(24);

/// How early tokens are refreshed, and how sweeps claim work.
#[derive(Clone, Debug)]
pub struct SweepSettings {
    /// Refresh TikTok access tokens this long before they expire.
    pub tiktok_window: Duration,
    /// Refresh Instagram tokens this long before they expire.
    pub instagram_window: Duration,
    /// A claimed account is not claimed again for this long (a lost job is found again
    /// after it).
    pub claim_for: Duration,
    /// Accounts claimed per statement.
    pub batch: u64,
}

impl Default for SweepSettings {
    fn default() -> Self {
        Self {
            tiktok_window: Duration::from_secs(60 * 60),
            instagram_window: Duration::from_secs(7 * 24 * 60 * 60),
            claim_for: Duration::from_secs(10 * 60),
            batch: 500,
        }
    }
}

impl SweepSettings {
    /// The refresh window of a platform.
    pub fn window(&self, platform: Platform) -> chrono::Duration {
        let window = match platform {
            Platform::TikTok => self.tiktok_window,
            Platform::Instagram => self.instagram_window,
        };
        chrono::Duration::from_std(window).unwrap_or_else(|_| chrono::Duration::days(1))
    }
}

/// An account whose refresh a sweep claimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    pub tenant_id: i64,
    pub account_id: i64,
}

/// The statuses whose tokens are kept fresh.
pub(crate) fn refreshable_statuses() -> [AccountStatus; 2] {
    [AccountStatus::Active, AccountStatus::RefreshFailing]
}

/// Whether a token is inside its refresh window at `now` (and still refreshable).
pub(crate) fn is_due(
    settings: &SweepSettings,
    platform: Platform,
    token: &oauth_token::Model,
    now: DateTime<Utc>,
) -> bool {
    let in_window = token.expires_at <= now + settings.window(platform);
    let retry_ok = token.next_refresh_at.is_none_or(|at| at <= now);
    let refreshable = match platform {
        Platform::TikTok => token.refresh_expires_at.is_none_or(|at| at > now),
        Platform::Instagram => token.expires_at > now && token.issued_at <= now - INSTAGRAM_MIN_AGE,
    };
    in_window && retry_ok && refreshable
}

/// `next_refresh_at` of a parked token: its account cannot be refreshed (deactivated,
/// expired, reconnect required), so no sweep query looks at it again. Reconnecting,
/// reactivating or a successful refresh clears it.
pub(crate) fn parked_at() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(253_402_214_400, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `EXISTS (the token's account is of `platform` and refreshable)`, correlated.
fn account_refreshable(platform: Option<Platform>) -> Expr {
    let mut accounts = social_account::Entity::find()
        .select_only()
        .expr(Expr::cust("1"))
        .filter(
            Expr::col((social_account::Entity, social_account::Column::Id))
                .equals((oauth_token::Entity, oauth_token::Column::AccountId)),
        )
        .filter(social_account::Column::Status.is_in(refreshable_statuses()))
        .filter(social_account::Column::DeactivatedAt.is_null());
    if let Some(platform) = platform {
        accounts = accounts.filter(social_account::Column::Platform.eq(platform));
    }
    Expr::exists(accounts.into_query())
}

fn refreshable_token(platform: Platform, now: DateTime<Utc>) -> Condition {
    match platform {
        Platform::TikTok => Condition::any()
            .add(oauth_token::Column::RefreshExpiresAt.is_null())
            .add(oauth_token::Column::RefreshExpiresAt.gt(now)),
        Platform::Instagram => Condition::all()
            .add(oauth_token::Column::ExpiresAt.gt(now))
            .add(oauth_token::Column::IssuedAt.lte(now - INSTAGRAM_MIN_AGE)),
    }
}

/// Where one sweep pass's claims of one kind (platform × window or retry) have got to:
/// the largest `(ordering time, id)` claimed so far, so the next claim starts after it
/// instead of reading the rows claimed before again (claimed rows stay in the candidate
/// index until they are refreshed); `done` once a claim came back short.
#[derive(Clone, Copy, Default)]
struct Cursor {
    after: Option<(DateTime<Utc>, i64)>,
    done: bool,
}

/// The claim cursors of one sweep pass, one per platform and kind.
#[derive(Default)]
struct Cursors([Cursor; 4]);

impl Cursors {
    fn get(&mut self, platform: Platform, retries: bool) -> &mut Cursor {
        let i = match platform {
            Platform::TikTok => 0,
            Platform::Instagram => 2,
        } + usize::from(retries);
        &mut self.0[i]
    }
}

/// Claims up to `settings.batch` due, unclaimed tokens of each platform and kind and
/// returns their accounts. Safe to run from several workers at once: a token is claimed by
/// one statement only. Two index-driven, LIMITed statements per platform: tokens inside
/// their window (partial index on `(platform, expires_at, id)` of unscheduled tokens) and
/// retries whose time has come, each starting where this pass's previous claim of its
/// kind ended (`cursors`), so a pass over a backlog of n due tokens reads each about once.
async fn claim_due(
    db: &impl ConnectionTrait,
    settings: &SweepSettings,
    now: DateTime<Utc>,
    cursors: &mut Cursors,
) -> ServiceResult<Vec<Due>> {
    let until = now
        + chrono::Duration::from_std(settings.claim_for)
            .unwrap_or_else(|_| chrono::Duration::minutes(10));
    let unclaimed = Condition::any()
        .add(oauth_token::Column::SweepClaimedUntil.is_null())
        .add(oauth_token::Column::SweepClaimedUntil.lt(now));
    let mut claimed = Vec::new();
    for platform in Platform::ALL {
        for retries in [false, true] {
            let cursor = cursors.get(platform, retries);
            if cursor.done {
                continue;
            }
            let order = if retries {
                oauth_token::Column::NextRefreshAt
            } else {
                oauth_token::Column::ExpiresAt
            };
            let mut candidates = oauth_token::Entity::find()
                .select_only()
                .column(oauth_token::Column::Id)
                .filter(oauth_token::Column::Platform.eq(platform))
                .filter(oauth_token::Column::ExpiresAt.lte(now + settings.window(platform)))
                .filter(refreshable_token(platform, now))
                .filter(unclaimed.clone())
                .filter(account_refreshable(Some(platform)));
            candidates = if retries {
                candidates.filter(oauth_token::Column::NextRefreshAt.lte(now))
            } else {
                candidates.filter(oauth_token::Column::NextRefreshAt.is_null())
            };
            // Keyset: `(order, id) > (last claimed)`, a range of the index.
            if let Some((at, id)) = cursor.after {
                candidates = candidates.filter(
                    Expr::tuple([
                        Expr::col((oauth_token::Entity, order)),
                        Expr::col((oauth_token::Entity, oauth_token::Column::Id)),
                    ])
                    .gt(Expr::tuple([Expr::value(at), Expr::value(id)])),
                );
            }
            let candidates = candidates
                .order_by_asc(order)
                .order_by_asc(oauth_token::Column::Id)
                .limit(settings.batch)
                .into_query();
            let rows = oauth_token::Entity::update_many()
                .col_expr(
                    oauth_token::Column::SweepClaimedUntil,
                    Expr::value(Some(until)),
                )
                .filter(oauth_token::Column::Id.in_subquery(candidates))
                .filter(unclaimed.clone())
                .exec_with_returning(db)
                .await?;
            cursor.done = (rows.len() as u64) < settings.batch;
            let last = rows
                .iter()
                .filter_map(|t| {
                    let at = if retries {
                        t.next_refresh_at?
                    } else {
                        t.expires_at
                    };
                    Some((at, t.id))
                })
                .max();
            cursor.after = last.or(cursor.after);
            claimed.extend(rows.into_iter().map(|t| Due {
                tenant_id: t.tenant_id,
                account_id: t.account_id,
            }));
        }
    }
    Ok(claimed)
}

/// Parks (see [`parked_at`]) up to `batch` tokens of `platform` inside its refresh window
/// whose account cannot be refreshed any more. Returns how many; call until it returns
/// less than `batch`. After one pass over a backlog, dead rows cost nothing per sweep, and
/// the pass only reads the platform's tokens inside its window (the due ones).
async fn park_dead(
    db: &impl ConnectionTrait,
    settings: &SweepSettings,
    now: DateTime<Utc>,
    platform: Platform,
) -> ServiceResult<u64> {
    let dead = oauth_token::Entity::find()
        .select_only()
        .column(oauth_token::Column::Id)
        .filter(oauth_token::Column::Platform.eq(platform))
        .filter(oauth_token::Column::NextRefreshAt.is_null())
        .filter(oauth_token::Column::ExpiresAt.lte(now + settings.window(platform)))
        .filter(account_refreshable(None).not())
        .order_by_asc(oauth_token::Column::ExpiresAt)
        .limit(settings.batch)
        .into_query();
    Ok(oauth_token::Entity::update_many()
        .col_expr(
            oauth_token::Column::NextRefreshAt,
            Expr::value(Some(parked_at())),
        )
        .filter(oauth_token::Column::Id.in_subquery(dead))
        .exec(db)
        .await?
        .rows_affected)
}

/// Forgets a claim (the job ran, or could not be queued).
pub(crate) async fn release_claim(db: &impl ConnectionTrait, account_id: i64) -> ServiceResult<()> {
    oauth_token::Entity::update_many()
        .col_expr(
            oauth_token::Column::SweepClaimedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(oauth_token::Column::AccountId.eq(account_id))
        .exec(db)
        .await?;
    Ok(())
}

/// A token that can no longer be refreshed, as seen at one version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unrefreshable {
    pub account_id: i64,
    pub version: i64,
    pub platform: Platform,
}

/// Up to `batch` refreshable accounts whose tokens can no longer be refreshed (Instagram
/// token expired, TikTok refresh token expired), index-driven.
pub async fn find_unrefreshable(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    batch: u64,
) -> ServiceResult<Vec<Unrefreshable>> {
    let mut found = Vec::new();
    for platform in Platform::ALL {
        let (dead, order) = match platform {
            Platform::TikTok => (
                oauth_token::Column::RefreshExpiresAt.lte(now),
                oauth_token::Column::RefreshExpiresAt,
            ),
            Platform::Instagram => (
                oauth_token::Column::ExpiresAt.lte(now),
                oauth_token::Column::ExpiresAt,
            ),
        };
        let rows: Vec<(i64, i64)> = oauth_token::Entity::find()
            .select_only()
            .column(oauth_token::Column::AccountId)
            .column(oauth_token::Column::Version)
            .filter(oauth_token::Column::Platform.eq(platform))
            .filter(oauth_token::Column::NextRefreshAt.is_null())
            .filter(dead)
            .filter(account_refreshable(Some(platform)))
            .order_by_asc(order)
            .limit(batch)
            .into_tuple()
            .all(db)
            .await?;
        found.extend(rows.into_iter().map(|(account_id, version)| Unrefreshable {
            account_id,
            version,
            platform,
        }));
    }
    Ok(found)
}

/// Marks one unrefreshable account EXPIRED and parks its token — only if its token is
/// still at the version seen (a reconnect meanwhile wins) and the account still
/// refreshable. Audited, with an event and a notification. Returns the account if expired.
pub async fn expire_one<D>(
    db: &D,
    bus: &EventBus,
    found: Unrefreshable,
    now: DateTime<Utc>,
) -> ServiceResult<Option<social_account::Model>>
where
    D: ConnectionTrait + TransactionTrait,
{
    let platform = found.platform;
    let txn = crate::db::begin(db).await?;
    // Park first, guarded by the version: a reconnect bumps it.
    let parked = oauth_token::Entity::update_many()
        .col_expr(
            oauth_token::Column::NextRefreshAt,
            Expr::value(Some(parked_at())),
        )
        .filter(oauth_token::Column::AccountId.eq(found.account_id))
        .filter(oauth_token::Column::Version.eq(found.version))
        .exec(&txn)
        .await?
        .rows_affected
        == 1;
    if !parked {
        txn.rollback().await?;
        return Ok(None);
    }
    let Some(account) = social_account::Entity::find_by_id(found.account_id)
        .filter(social_account::Column::Status.is_in(refreshable_statuses()))
        .filter(social_account::Column::DeactivatedAt.is_null())
        .one(&txn)
        .await?
    else {
        txn.commit().await?; // Not refreshable any more: parked is right.
        return Ok(None);
    };
    let previous = account.status;
    let mut active: social_account::ActiveModel = account.into();
    active.status = Set(AccountStatus::Expired);
    active.status_reason = Set(Some("expired".into()));
    active.updated_at = Set(now);
    let updated = active.update(&txn).await?;
    audit::record(
        &txn,
        &Actor::system(Some(updated.tenant_id), "system"),
        AuditAction::TokenRefreshFailed,
        Some(Target::new(TARGET, updated.id)),
        json!({
            "platform": updated.platform,
            "errorClass": "grant_dead",
            "errorCode": "expired",
            "previousStatus": previous,
            "status": updated.status,
        }),
    )
    .await?;
    let view = FailureView {
        code: "RECONNECT_REQUIRED",
        message: format!(
            "{} access{} expired before it could be refreshed.",
            platform.display_name(),
            updated
                .username
                .as_deref()
                .map(|u| format!(" for @{u}"))
                .unwrap_or_default()
        ),
        action: Some("Reconnect the account.".into()),
    };
    let event = events::record(
        &txn,
        NewEvent {
            tenant_id: updated.tenant_id,
            account_id: updated.id,
            platform,
            kind: EventKind::Expired,
            error: Some(&view),
        },
    )
    .await?;
    crate::events::notifications::open_incident(
        &txn,
        updated.tenant_id,
        updated.id,
        platform,
        EventKind::Expired,
        &view,
    )
    .await?;
    txn.commit().await?;
    bus.publish(event).await;
    Ok(Some(updated))
}

/// Accounts whose tokens can no longer be refreshed become EXPIRED: the user must
/// reconnect. Works in LIMITed batches; returns them.
async fn expire_unrefreshable<D>(
    db: &D,
    bus: &EventBus,
    now: DateTime<Utc>,
) -> ServiceResult<Vec<social_account::Model>>
where
    D: ConnectionTrait + TransactionTrait,
{
    const BATCH: u64 = 500;
    let mut expired = Vec::new();
    loop {
        let found = find_unrefreshable(db, now, BATCH).await?;
        let full = found.len() as u64 >= BATCH;
        for candidate in found {
            if let Some(account) = expire_one(db, bus, candidate, now).await? {
                expired.push(account);
            }
        }
        if !full {
            return Ok(expired);
        }
    }
}

/// A TikTok refresh token is flagged EXPIRING this long before its own expiry (it cannot
/// be extended: the user must reconnect before then).
pub(crate) const EXPIRING_NOTICE: chrono::Duration = chrono::Duration::days(7);
/// An account is flagged EXPIRING after this many refreshes failed in a row.
pub(crate) const FAILING_NOTICE: i32 = 5;

/// Raises EXPIRING (once per connection) for refreshable accounts whose TikTok refresh
/// token ends within a week (Instagram tokens are extended by every refresh, so never for
/// them), or whose refreshes keep failing. LIMITed batches; the "already raised" check is
/// part of the query. Returns how many were raised.
pub async fn flag_expiring<D>(db: &D, bus: &EventBus, now: DateTime<Utc>) -> ServiceResult<usize>
where
    D: ConnectionTrait + TransactionTrait,
{
    const BATCH: u64 = 500;
    let mut raised = 0;
    for (platform, ending) in [
        (Some(Platform::TikTok), true),
        (None, false), // failing, any platform
    ] {
        loop {
            let already = entity::token_event::Entity::find()
                .select_only()
                .expr(Expr::cust("1"))
                .filter(
                    Expr::col((
                        entity::token_event::Entity,
                        entity::token_event::Column::AccountId,
                    ))
                    .equals((oauth_token::Entity, oauth_token::Column::AccountId)),
                )
                .filter(entity::token_event::Column::Kind.eq(EventKind::Expiring))
                // Once per connection: events since the account was (re)connected.
                .filter(Expr::cust(
                    "token_events.occurred_at >= (SELECT COALESCE(a.connected_at, a.created_at) \
                     FROM social_accounts a WHERE a.id = oauth_tokens.account_id)",
                ))
                .into_query();
            let mut candidates = oauth_token::Entity::find()
                .filter(
                    oauth_token::Column::NextRefreshAt
                        .lt(parked_at())
                        .or(oauth_token::Column::NextRefreshAt.is_null()),
                )
                .filter(account_refreshable(platform))
                .filter(Expr::exists(already).not());
            candidates = if ending {
                candidates
                    .filter(oauth_token::Column::RefreshExpiresAt.lte(now + EXPIRING_NOTICE))
                    .order_by_asc(oauth_token::Column::RefreshExpiresAt)
            } else {
                candidates
                    .filter(oauth_token::Column::FailureCount.gte(FAILING_NOTICE))
                    .order_by_asc(oauth_token::Column::Id)
            };
            let tokens = candidates.limit(BATCH).all(db).await?;
            let full = tokens.len() as u64 >= BATCH;
            let accounts: Vec<social_account::Model> = social_account::Entity::find()
                .filter(social_account::Column::Id.is_in(tokens.iter().map(|t| t.account_id)))
                .all(db)
                .await?;
            for token in tokens {
                let Some(account) = accounts.iter().find(|a| a.id == token.account_id) else {
                    continue;
                };
                if raise_expiring(db, bus, account, &token, now).await? {
                    raised += 1;
                }
            }
            if !full {
                break;
            }
        }
    }
    Ok(raised)
}

async fn raise_expiring<D>(
    db: &D,
    bus: &EventBus,
    account: &social_account::Model,
    token: &oauth_token::Model,
    now: DateTime<Utc>,
) -> ServiceResult<bool>
where
    D: ConnectionTrait + TransactionTrait,
{
    let platform: Platform = account.platform;
    let who = account
        .username
        .as_deref()
        .map(|u| format!(" for @{u}"))
        .unwrap_or_default();
    let message = match token
        .refresh_expires_at
        .filter(|at| platform == Platform::TikTok && *at <= now + EXPIRING_NOTICE)
    {
        Some(at) => format!(
            "{} access{who} ends on {} and cannot be extended.",
            platform.display_name(),
            at.format("%Y-%m-%d")
        ),
        None => format!(
            "{} access{who} could not be refreshed {} times in a row and may expire.",
            platform.display_name(),
            token.failure_count
        ),
    };
    let view = FailureView {
        code: "EXPIRING",
        message,
        action: Some("Reconnect the account before it expires.".into()),
    };
    // Once per connection, even when sweeps on several workers pick the account at once.
    let once_key = format!(
        "EXPIRING:{}:{}",
        account.id,
        account
            .connected_at
            .unwrap_or(account.created_at)
            .timestamp_micros()
    );
    let txn = crate::db::begin(db).await?;
    let event = events::record_once(
        &txn,
        NewEvent {
            tenant_id: account.tenant_id,
            account_id: account.id,
            platform,
            kind: EventKind::Expiring,
            error: Some(&view),
        },
        once_key,
    )
    .await?;
    txn.commit().await?;
    let Some(event) = event else {
        return Ok(false);
    };
    bus.publish(event).await;
    Ok(true)
}

/// What one sweep pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Refreshes queued.
    pub queued: usize,
    /// Accounts marked EXPIRED.
    pub expired: usize,
    /// The queue failed (in this pass or an earlier one): no sweep claims work before this.
    pub queue_backoff_until: Option<DateTime<Utc>>,
}

/// The setting holding the queue backoff: `<until, RFC 3339> <failures in a row>`.
pub(crate) const QUEUE_BACKOFF: &str = "sweep_queue_backoff";

/// How long sweeps stop claiming after the queue failed `failures` times in a row: 1 s
/// doubling up to 5 minutes (the default schedule period).
fn queue_backoff(failures: u32) -> Duration {
    Duration::from_secs(Ord::min(
        1u64 << Ord::min(failures.saturating_sub(1), 9),
        300,
    ))
}

/// The deployment-wide queue backoff, kept in a setting so every worker honours it.
#[derive(Clone, Copy, Debug, Default)]
struct QueueBackoff {
    until: Option<DateTime<Utc>>,
    failures: u32,
}

impl QueueBackoff {
    async fn load(db: &impl ConnectionTrait) -> ServiceResult<Self> {
        let Some(value) = crate::ops::settings::get(db, QUEUE_BACKOFF).await? else {
            return Ok(Self::default());
        };
        let mut parts = value.split_whitespace();
        let until = parts
            .next()
            .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
            .map(|at| at.with_timezone(&Utc));
        let failures = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        Ok(Self { until, failures })
    }

    /// Records one more failure; returns the end of the new backoff. A failure to record
    /// it is logged: the pass stops either way.
    async fn fail(self, db: &impl ConnectionTrait) -> DateTime<Utc> {
        let failures = self.failures.saturating_add(1);
        let until = Utc::now()
            + chrono::Duration::from_std(queue_backoff(failures))
                .unwrap_or_else(|_| chrono::Duration::minutes(5));
        let value = format!("{} {failures}", until.to_rfc3339());
        if let Err(err) = crate::ops::settings::put(db, QUEUE_BACKOFF, value).await {
            tracing::warn!(error = %err, "could not record the sweep's queue backoff");
        }
        until
    }

    async fn clear(self, db: &impl ConnectionTrait) -> ServiceResult<()> {
        if self.failures > 0 {
            crate::ops::settings::put(db, QUEUE_BACKOFF, String::new()).await?;
        }
        Ok(())
    }
}

/// Forgets the claims of accounts that were claimed but not queued (one statement; a
/// claim batch is bounded by `SweepSettings::batch` per platform and kind).
async fn release_claims(db: &impl ConnectionTrait, due: &[Due]) -> ServiceResult<()> {
    for chunk in due.chunks(1000) {
        oauth_token::Entity::update_many()
            .col_expr(
                oauth_token::Column::SweepClaimedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(oauth_token::Column::AccountId.is_in(chunk.iter().map(|d| d.account_id)))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// One sweep pass: parks dead tokens, marks unrefreshable accounts EXPIRED, raises
/// EXPIRING, then claims every token inside its refresh window (in batches) and queues
/// one refresh per account. Safe on every worker at once: claims make each account
/// queued once.
///
/// When the queue fails, the pass stops at once: the unqueued claims are released (the
/// accounts stay due) and no sweep claims again until a backoff has passed (1 s doubling
/// up to 5 minutes, deployment-wide), so a queue outage costs one failed enqueue per
/// backoff instead of a claim-release loop.
pub async fn run<D, Q>(
    db: &D,
    bus: &EventBus,
    settings: &SweepSettings,
    queue: &Q,
) -> ServiceResult<SweepReport>
where
    D: ConnectionTrait + TransactionTrait,
    Q: JobQueue,
{
    let now = Utc::now();
    // Dead rows leave the candidate index once, in batches; then they cost nothing.
    for platform in Platform::ALL {
        while park_dead(db, settings, now, platform).await? >= settings.batch {}
    }
    let mut report = SweepReport {
        expired: expire_unrefreshable(db, bus, now).await?.len(),
        ..SweepReport::default()
    };
    flag_expiring(db, bus, now).await?;
    let backoff = QueueBackoff::load(db).await?;
    if let Some(until) = backoff.until.filter(|until| *until > now) {
        report.queue_backoff_until = Some(until);
        return Ok(report);
    }
    let mut cursors = Cursors::default();
    loop {
        let due = claim_due(db, settings, now, &mut cursors).await?;
        if due.is_empty() {
            break;
        }
        if let Err(err) = queue.enqueue_many(&jobs_for(&due, Trigger::Sweep)).await {
            release_claims(db, &due).await?;
            let until = backoff.fail(db).await;
            tracing::warn!(
                error = %err,
                queued = report.queued,
                released = due.len(),
                until = %until,
                "could not queue refreshes; the sweep backs off"
            );
            report.queue_backoff_until = Some(until);
            return Ok(report);
        }
        report.queued += due.len();
    }
    backoff.clear(db).await?;
    Ok(report)
}

/// The jobs refreshing claimed accounts.
fn jobs_for(due: &[Due], trigger: Trigger) -> Vec<QueuedRefresh> {
    due.iter()
        .map(|due| QueuedRefresh {
            tenant_id: due.tenant_id,
            account_id: due.account_id,
            trigger,
        })
        .collect()
}

/// Queues a refresh of every refreshable account of the caller's tenant matching `filter`
/// (INTEGRATOR), whether due or not, except accounts already queued (their token is
/// claimed by a sweep or an earlier bulk refresh): calling it twice queues each account
/// once. Claims in LIMITed batches, like the sweep; the job releases each claim when it
/// has run. Returns how many were queued.
pub async fn refresh_many<Q: JobQueue>(
    db: &impl ConnectionTrait,
    settings: &SweepSettings,
    queue: &Q,
    caller: &Caller,
    filter: &AccountFilter,
) -> ServiceResult<u64> {
    caller.require(Role::Integrator)?;
    let now = Utc::now();
    let until = now
        + chrono::Duration::from_std(settings.claim_for)
            .unwrap_or_else(|_| chrono::Duration::minutes(10));
    let unclaimed = Condition::any()
        .add(oauth_token::Column::SweepClaimedUntil.is_null())
        .add(oauth_token::Column::SweepClaimedUntil.lt(now));
    let mut queued = 0;
    loop {
        let accounts = accounts::select(caller.tenant_id, filter)
            .select_only()
            .column(social_account::Column::Id)
            .filter(social_account::Column::Status.is_in(refreshable_statuses()))
            .filter(social_account::Column::DeactivatedAt.is_null())
            .into_query();
        let candidates = oauth_token::Entity::find()
            .select_only()
            .column(oauth_token::Column::Id)
            .filter(oauth_token::Column::TenantId.eq(caller.tenant_id))
            .filter(oauth_token::Column::AccountId.in_subquery(accounts))
            .filter(unclaimed.clone())
            .order_by_asc(oauth_token::Column::Id)
            .limit(settings.batch)
            .into_query();
        let claimed: Vec<Due> = oauth_token::Entity::update_many()
            .col_expr(
                oauth_token::Column::SweepClaimedUntil,
                Expr::value(Some(until)),
            )
            .filter(oauth_token::Column::Id.in_subquery(candidates))
            .filter(unclaimed.clone())
            .exec_with_returning(db)
            .await?
            .into_iter()
            .map(|t| Due {
                tenant_id: t.tenant_id,
                account_id: t.account_id,
            })
            .collect();
        if let Err(err) = queue.enqueue_many(&jobs_for(&claimed, Trigger::Bulk)).await {
            release_claims(db, &claimed).await?;
            return Err(ServiceError::Internal(format!(
                "bulk refresh stopped after {queued} accounts: {err}"
            )));
        }
        queued += claimed.len() as u64;
        if (claimed.len() as u64) < settings.batch {
            return Ok(queued);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(
        expires_in: chrono::Duration,
        age: chrono::Duration,
        now: DateTime<Utc>,
    ) -> oauth_token::Model {
        oauth_token::Model {
            id: 1,
            account_id: 1,
            tenant_id: 1,
            platform: Platform::TikTok,
            key_id: "k".into(),
            access_token_enc: String::new(),
            refresh_token_enc: None,
            expires_at: now + expires_in,
            refresh_expires_at: Some(now + chrono::Duration::days(300)),
            issued_at: now - age,
            last_refreshed_at: None,
            scopes: String::new(),
            version: 0,
            refresh_lease_until: None,
            refresh_lease_owner: None,
            next_refresh_at: None,
            failure_count: 0,
            sweep_claimed_until: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn the_queue_backoff_doubles_up_to_the_schedule_period() {
        let secs = |n| queue_backoff(n).as_secs();
        assert_eq!([secs(1), secs(2), secs(3), secs(6)], [1, 2, 4, 32]);
        assert_eq!(secs(9), 256);
        assert_eq!(secs(10), 300);
        assert_eq!(secs(u32::MAX), 300);
    }

    #[test]
    fn windows_are_before_expiry_never_after() {
        let settings = SweepSettings::default();
        let now = Utc::now();
        let h = chrono::Duration::hours;
        // TikTok: due in the last hour of a 24 h token.
        assert!(!is_due(
            &settings,
            Platform::TikTok,
            &token(h(2), h(22), now),
            now
        ));
        assert!(is_due(
            &settings,
            Platform::TikTok,
            &token(h(1) - chrono::Duration::minutes(1), h(23), now),
            now
        ));
        // Instagram: due in the last week, never under 24 h old, never once expired.
        let d = chrono::Duration::days;
        assert!(!is_due(
            &settings,
            Platform::Instagram,
            &token(d(10), d(50), now),
            now
        ));
        assert!(is_due(
            &settings,
            Platform::Instagram,
            &token(d(6), d(54), now),
            now
        ));
        assert!(
            !is_due(
                &settings,
                Platform::Instagram,
                &token(d(6), h(20), now),
                now
            ),
            "too young"
        );
        assert!(
            !is_due(
                &settings,
                Platform::Instagram,
                &token(-h(1), d(60), now),
                now
            ),
            "expired"
        );
        // A scheduled retry waits for its time.
        let mut waiting = token(h(1) - chrono::Duration::minutes(5), h(23), now);
        waiting.next_refresh_at = Some(now + chrono::Duration::minutes(2));
        assert!(!is_due(&settings, Platform::TikTok, &waiting, now));
    }
}
