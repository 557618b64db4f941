//! Signed webhooks: token events POSTed to registered URLs, `Tokenwarden-Signature:
//! t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`, retried with exponential backoff for up to
//! 24 hours; a webhook failing for 24 hours is disabled. Deliveries are created in the
//! transaction of their event (outbox), so none is lost.

use std::{net::IpAddr, time::Duration};

use chrono::{DateTime, Utc};
use entity::{token_event, webhook, webhook_delivery};
use ring::hmac;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Set, TransactionSession, TransactionTrait, sea_query::Expr,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::{
    engine::Engine,
    error::{ServiceError, ServiceResult},
    events::EventKind,
    identity::audit::{self, AuditAction, Target},
    identity::caller::{Caller, Role},
    pagination::{self, Direction, Page, PageArgs},
    tokens::vault::{Aad, TokenKind},
};

/// Deliveries are retried for this long, then given up; a webhook failing this long is
/// disabled.
pub const GIVE_UP_AFTER: chrono::Duration = chrono::Duration::hours(24);

/// Whether an address must not be called (loopback, private, link-local, cloud metadata,
/// unspecified, multicast...).
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 // CGNAT 100.64/10
                || v4.octets()[0] == 0
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link local
                || v6.to_ipv4_mapped().is_some_and(|v4| is_forbidden(IpAddr::V4(v4)))
        }
    }
}

/// SSRF guard: the URL must be http(s) and every address its host resolves to must be
/// public, unless private targets are allowed (TOKENWARDEN_WEBHOOK_ALLOW_PRIVATE).
pub async fn check_target(url: &str, allow_private: bool) -> ServiceResult<url::Url> {
    let parsed = url::Url::parse(url)
        .map_err(|_| ServiceError::bad_input(format!("{url:?} is not a URL")))?;
    if !matches!(parsed.scheme(), "https" | "http")
        || parsed.username() != ""
        || parsed.password().is_some()
    {
        return Err(ServiceError::bad_input(
            "webhook URLs must be http(s) without credentials",
        ));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| ServiceError::bad_input("the webhook URL has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = parsed.port_or_known_default().unwrap_or(443);
    if allow_private {
        return Ok(parsed);
    }
    let addrs: Vec<_> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|_| ServiceError::bad_input(format!("cannot resolve {host:?}")))?
        .collect();
    if addrs.is_empty() || addrs.iter().any(|a| is_forbidden(a.ip())) {
        return Err(ServiceError::bad_input(format!(
            "{host:?} resolves to a private, loopback, link-local or metadata address; webhooks \
             must target public hosts"
        )));
    }
    Ok(parsed)
}

/// `t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`.
pub fn signature(secret: &SecretString, timestamp: i64, body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose_secret().as_bytes());
    let tag = hmac::sign(&key, format!("{timestamp}.{body}").as_bytes());
    format!("t={timestamp},v1={}", hex::encode(tag.as_ref()))
}

fn parse_kinds(kinds: &[EventKind]) -> String {
    kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// A new webhook and its signing secret (shown once).
pub struct Registered {
    pub webhook: webhook::Model,
    pub secret: SecretString,
}

/// Registers a webhook (ADMIN).
pub async fn register<D>(
    db: &D,
    engine: &Engine,
    caller: &Caller,
    url: &str,
    kinds: &[EventKind],
    description: Option<String>,
) -> ServiceResult<Registered>
where
    D: ConnectionTrait + TransactionTrait,
{
    caller.require(Role::Admin)?;
    let url = check_target(url, engine.settings.webhook_allow_private).await?;
    let secret = crate::identity::api_keys::generate_key()?;
    let secret = SecretString::from(format!("whsec_{}", &secret.expose_secret()[3..]));
    let txn = db.begin().await?;
    let mut row = webhook::ActiveModel {
        tenant_id: Set(caller.tenant_id),
        url: Set(url.to_string()),
        kinds: Set(parse_kinds(kinds)),
        description: Set(description),
        secret_enc: Set(String::new()),
        created_at: Set(Utc::now()),
        failing_since: Set(None),
        disabled_at: Set(None),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let sealed = engine
        .vault()
        .encrypt(
            &secret,
            &Aad::new(caller.tenant_id, row.id, TokenKind::WebhookSecret),
        )
        .map_err(ServiceError::vault)?;
    let mut active: webhook::ActiveModel = row.into();
    active.secret_enc = Set(sealed);
    row = active.update(&txn).await?;
    audit::record(
        &txn,
        &caller.actor(),
        AuditAction::WebhookRegistered,
        Some(Target::new("Webhook", row.id)),
        json!({ "url": row.url, "kinds": row.kinds }),
    )
    .await?;
    txn.commit().await?;
    Ok(Registered {
        webhook: row,
        secret,
    })
}

/// The caller's webhooks, oldest first (ADMIN).
pub async fn list(
    db: &impl ConnectionTrait,
    caller: &Caller,
    page: PageArgs,
) -> ServiceResult<Page<webhook::Model>> {
    caller.require(Role::Admin)?;
    let select = webhook::Entity::find().filter(webhook::Column::TenantId.eq(caller.tenant_id));
    pagination::paginate(
        db,
        select,
        webhook::Column::Id,
        Direction::OldestFirst,
        page,
    )
    .await
}

async fn find(
    db: &impl ConnectionTrait,
    caller: &Caller,
    id: i64,
) -> ServiceResult<webhook::Model> {
    caller.require(Role::Admin)?;
    webhook::Entity::find_by_id(id)
        .filter(webhook::Column::TenantId.eq(caller.tenant_id))
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound("webhook"))
}

/// Deletes a webhook and its deliveries (ADMIN).
pub async fn delete<D>(db: &D, caller: &Caller, id: i64) -> ServiceResult<webhook::Model>
where
    D: ConnectionTrait + TransactionTrait,
{
    let txn = db.begin().await?;
    let found = find(&txn, caller, id).await?;
    webhook_delivery::Entity::delete_many()
        .filter(webhook_delivery::Column::WebhookId.eq(found.id))
        .exec(&txn)
        .await?;
    webhook::Entity::delete_by_id(found.id).exec(&txn).await?;
    audit::record(
        &txn,
        &caller.actor(),
        AuditAction::WebhookDeleted,
        Some(Target::new("Webhook", found.id)),
        json!({ "url": found.url }),
    )
    .await?;
    txn.commit().await?;
    Ok(found)
}

/// A webhook's deliveries, newest first (ADMIN).
pub async fn deliveries(
    db: &impl ConnectionTrait,
    caller: &Caller,
    webhook_id: i64,
    page: PageArgs,
) -> ServiceResult<Page<webhook_delivery::Model>> {
    let found = find(db, caller, webhook_id).await?;
    let select =
        webhook_delivery::Entity::find().filter(webhook_delivery::Column::WebhookId.eq(found.id));
    pagination::paginate(
        db,
        select,
        webhook_delivery::Column::Id,
        Direction::NewestFirst,
        page,
    )
    .await
}

/// Creates the deliveries of a tenant event for its active, matching webhooks. Called in
/// the event's transaction.
pub async fn enqueue_for_event(
    db: &impl ConnectionTrait,
    event: &token_event::Model,
) -> ServiceResult<()> {
    // Deployment-wide events (no tenant) go to every tenant's webhooks.
    let mut select = webhook::Entity::find().filter(webhook::Column::DisabledAt.is_null());
    if let Some(tenant_id) = event.tenant_id {
        select = select.filter(webhook::Column::TenantId.eq(tenant_id));
    }
    let hooks = select.all(db).await?;
    for hook in hooks {
        let wanted = hook.kinds.is_empty() || hook.kinds.split(',').any(|k| k == event.kind);
        if !wanted {
            continue;
        }
        webhook_delivery::ActiveModel {
            webhook_id: Set(hook.id),
            tenant_id: Set(hook.tenant_id),
            event_id: Set(event.id),
            status: Set("PENDING".into()),
            attempts: Set(0),
            last_status_code: Set(None),
            last_error: Set(None),
            next_attempt_at: Set(event.occurred_at),
            created_at: Set(event.occurred_at),
            delivered_at: Set(None),
            ..Default::default()
        }
        .insert(db)
        .await?;
    }
    Ok(())
}

/// The JSON body of a delivery.
pub fn body(delivery: &webhook_delivery::Model, event: &token_event::Model) -> String {
    json!({
        "deliveryId": delivery.id,
        "event": {
            "id": event.id,
            "kind": event.kind,
            "occurredAt": event.occurred_at,
            "accountId": event.account_id,
            "platform": event.platform,
            "error": event.error_code.as_ref().map(|code| json!({
                "code": code,
                "message": event.error_message,
                "action": event.error_action,
            })),
        }
    })
    .to_string()
}

/// Claims and attempts up to `limit` due deliveries. Returns how many were attempted.
pub async fn deliver_due<D>(
    db: &D,
    engine: &Engine,
    client: &reqwest::Client,
    limit: u64,
) -> ServiceResult<usize>
where
    D: ConnectionTrait + TransactionTrait,
{
    let now = Utc::now();
    let due = webhook_delivery::Entity::find()
        .select_only()
        .column(webhook_delivery::Column::Id)
        .filter(webhook_delivery::Column::Status.eq("PENDING"))
        .filter(webhook_delivery::Column::NextAttemptAt.lte(now))
        .order_by_asc(webhook_delivery::Column::NextAttemptAt)
        .limit(limit)
        .into_query();
    // Claim: push the next attempt out for longer than the whole batch can take (each
    // call is bounded by DELIVERY_TIMEOUT), so other workers skip these meanwhile.
    let claim = chrono::Duration::from_std(DELIVERY_TIMEOUT * (limit as u32 + 1))
        .unwrap_or_else(|_| chrono::Duration::minutes(10));
    let claimed = webhook_delivery::Entity::update_many()
        .col_expr(
            webhook_delivery::Column::NextAttemptAt,
            Expr::value(now + claim),
        )
        .filter(webhook_delivery::Column::Id.in_subquery(due))
        .filter(webhook_delivery::Column::NextAttemptAt.lte(now))
        .filter(webhook_delivery::Column::Status.eq("PENDING"))
        .exec_with_returning(db)
        .await?;
    let count = claimed.len();
    for delivery in claimed {
        // One broken delivery (say, an undecryptable secret) must not hold up the others.
        let id = delivery.id;
        if let Err(err) = attempt(db, engine, client, delivery).await {
            tracing::warn!(delivery_id = id, error = %err, "webhook delivery attempt failed");
        }
    }
    Ok(count)
}

async fn attempt<D>(
    db: &D,
    engine: &Engine,
    client: &reqwest::Client,
    delivery: webhook_delivery::Model,
) -> ServiceResult<()>
where
    D: ConnectionTrait + TransactionTrait,
{
    let Some(hook) = webhook::Entity::find_by_id(delivery.webhook_id)
        .one(db)
        .await?
    else {
        return Ok(());
    };
    let Some(event) = token_event::Entity::find_by_id(delivery.event_id)
        .one(db)
        .await?
    else {
        return Ok(());
    };
    let secret = engine
        .vault()
        .decrypt(
            &hook.secret_enc,
            &Aad::new(hook.tenant_id, hook.id, TokenKind::WebhookSecret),
        )
        .map_err(ServiceError::vault)?;
    let payload = body(&delivery, &event);
    let now = Utc::now();
    // DNS may have changed since registration: check again before every call.
    let outcome = match check_target(&hook.url, engine.settings.webhook_allow_private).await {
        Err(err) => Err((None, err.to_string())),
        Ok(url) => {
            let sent = client
                .post(url)
                .header("content-type", "application/json")
                .header(
                    "tokenwarden-signature",
                    signature(&secret, now.timestamp(), &payload),
                )
                .header("tokenwarden-delivery", delivery.id.to_string())
                .header("tokenwarden-event", event.kind.as_str())
                .body(payload)
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => Ok(response.status().as_u16()),
                Ok(response) => Err((
                    Some(response.status().as_u16()),
                    format!("HTTP {}", response.status().as_u16()),
                )),
                Err(err) => Err((
                    None,
                    if err.is_timeout() {
                        "timeout".into()
                    } else {
                        "connection failed".into()
                    },
                )),
            }
        }
    };
    let attempts = delivery.attempts + 1;
    let txn = db.begin().await?;
    let mut active: webhook_delivery::ActiveModel = delivery.clone().into();
    active.attempts = Set(attempts);
    let mut hook_active: webhook::ActiveModel = hook.clone().into();
    match outcome {
        Ok(status) => {
            active.status = Set("DELIVERED".into());
            active.last_status_code = Set(Some(i32::from(status)));
            active.last_error = Set(None);
            active.delivered_at = Set(Some(now));
            hook_active.failing_since = Set(None);
        }
        Err((status, error)) => {
            active.last_status_code = Set(status.map(i32::from));
            active.last_error = Set(Some(error));
            let failing_since = hook.failing_since.unwrap_or(now);
            hook_active.failing_since = Set(Some(failing_since));
            if now - delivery.created_at >= GIVE_UP_AFTER {
                active.status = Set("FAILED".into());
            } else {
                let wait = crate::tokens::attempts::backoff(attempts as u32, None);
                active.next_attempt_at = Set(now
                    + chrono::Duration::from_std(wait)
                        .unwrap_or_else(|_| chrono::Duration::hours(1)));
            }
            if now - failing_since >= GIVE_UP_AFTER && hook.disabled_at.is_none() {
                hook_active.disabled_at = Set(Some(now));
                audit::record(
                    &txn,
                    &crate::identity::caller::Actor::system(Some(hook.tenant_id), "system"),
                    AuditAction::WebhookDisabled,
                    Some(Target::new("Webhook", hook.id)),
                    json!({ "url": hook.url, "failingSince": failing_since }),
                )
                .await?;
            }
        }
    }
    active.update(&txn).await?;
    hook_active.update(&txn).await?;
    txn.commit().await?;
    Ok(())
}

/// How long a receiver may take.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The time a delivery was made from a signature header (receiver side helper, for tests
/// and docs): verifies `v1` and returns `t`.
pub fn verify(secret: &str, header: &str, body: &str) -> Option<DateTime<Utc>> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (t, v1) = (t?, v1?);
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::verify(&key, format!("{t}.{body}").as_bytes(), &v1).ok()?;
    DateTime::from_timestamp(t, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let secret = SecretString::from("whsec_test".to_owned());
        let header = signature(&secret, 1_700_000_000, "{\"a\":1}");
        assert!(header.starts_with("t=1700000000,v1="));
        assert!(verify("whsec_test", &header, "{\"a\":1}").is_some());
        assert!(verify("whsec_test", &header, "{\"a\":2}").is_none());
        assert!(verify("other", &header, "{\"a\":1}").is_none());
    }

    #[test]
    fn private_and_metadata_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.169.254",
            "::1",
            "fd00::1",
            "fe80::1",
            "0.0.0.0",
            "100.64.0.1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_forbidden(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(!is_forbidden(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[tokio::test]
    async fn loopback_targets_need_the_opt_in() {
        assert!(
            check_target("http://127.0.0.1:9/hook", false)
                .await
                .is_err()
        );
        assert!(
            check_target("http://localhost:9/hook", false)
                .await
                .is_err()
        );
        assert!(check_target("http://127.0.0.1:9/hook", true).await.is_ok());
        assert!(check_target("ftp://example.com/", true).await.is_err());
    }
}
