//! Signed webhooks: token events POSTed to registered URLs, `Tokenwarden-Signature:
//! t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`, retried with exponential backoff for up to
//! 24 hours; a webhook failing for 24 hours is disabled. Deliveries are created in the
//! transaction of their event (outbox), so none is lost.

use std::{net::IpAddr, time::Duration};

use chrono::{DateTime, Utc};
use entity::{enums::DeliveryStatus, token_event, webhook, webhook_delivery};
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
pub(crate) const GIVE_UP_AFTER: chrono::Duration = chrono::Duration::hours(24);

/// IPv4 special-purpose ranges (IANA IPv4 Special-Purpose Address Registry, RFC 6890 and
/// successors) plus multicast and the reserved 240/4: none is a webhook target.
const FORBIDDEN_V4: &[([u8; 4], u8)] = &[
    ([0, 0, 0, 0], 8),       // "this network" (RFC 791)
    ([10, 0, 0, 0], 8),      // private (RFC 1918)
    ([100, 64, 0, 0], 10),   // shared address space / CGNAT (RFC 6598)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link local, cloud metadata (RFC 3927)
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments, DS-Lite, NAT64 discovery (RFC 6890)
    ([192, 0, 2, 0], 24),    // documentation TEST-NET-1 (RFC 5737)
    ([192, 31, 196, 0], 24), // AS112-v4 (RFC 7535)
    ([192, 52, 193, 0], 24), // AMT (RFC 7450)
    ([192, 88, 99, 0], 24),  // 6to4 relay anycast (RFC 7526)
    ([192, 168, 0, 0], 16),  // private
    ([192, 175, 48, 0], 24), // direct delegation AS112 (RFC 7534)
    ([198, 18, 0, 0], 15),   // benchmarking (RFC 2544)
    ([198, 51, 100, 0], 24), // documentation TEST-NET-2
    ([203, 0, 113, 0], 24),  // documentation TEST-NET-3
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, limited broadcast
];

/// IPv6 ranges refused inside global unicast (2000::/3); everything outside 2000::/3
/// (loopback, unspecified, IPv4-mapped and -compatible, NAT64 64:ff9b::/96 and
/// 64:ff9b:1::/48, discard 100::/64, unique local fc00::/7, link local fe80::/10, site local,
/// multicast) is refused as a whole. IANA IPv6 Special-Purpose Address Registry.
const FORBIDDEN_V6: &[([u16; 8], u8)] = &[
    ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), // IETF protocol assignments: Teredo, benchmarking 2001:2::/48, ORCHID
    ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation (RFC 3849)
    ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16), // 6to4: embeds any IPv4 (RFC 3056)
    ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), // documentation (RFC 9637)
    ([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16), // SRv6 SIDs (RFC 9602)
];

fn in_v4(ip: std::net::Ipv4Addr, (net, len): ([u8; 4], u8)) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from_be_bytes(net) & mask
}

fn in_v6(ip: std::net::Ipv6Addr, (net, len): ([u16; 8], u8)) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(std::net::Ipv6Addr::from(net)) & mask
}

/// Whether an address must not be called: every special-purpose range of IPv4 and IPv6,
/// IPv4 addresses in their IPv6 forms included (see the two tables). Only public unicast
/// passes.
fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => FORBIDDEN_V4.iter().any(|&net| in_v4(v4, net)),
        IpAddr::V6(v6) => {
            let global_unicast = in_v6(v6, ([0x2000, 0, 0, 0, 0, 0, 0, 0], 3));
            !global_unicast || FORBIDDEN_V6.iter().any(|&net| in_v6(v6, net))
        }
    }
}

/// The HTTP client of webhook deliveries: no redirects, no proxy from the environment, a
/// bounded timeout, and a resolver that applies the SSRF guard to the very addresses the
/// connection uses, so DNS cannot answer one address to the check and another to the call
/// (rebinding).
pub fn http_client(allow_private: bool) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(DELIVERY_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(std::sync::Arc::new(GuardedResolver { allow_private }))
        .build()
}

/// Resolves host names for [`http_client`] and refuses forbidden addresses.
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(format!("{host} has no address").into());
            }
            if !allow_private && addrs.iter().any(|a| is_forbidden(a.ip())) {
                return Err(format!("{host} resolves to a forbidden address").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// SSRF guard: the URL must be http(s) and every address its host resolves to must be
/// public, unless private targets are allowed (TOKENWARDEN_WEBHOOK_ALLOW_PRIVATE).
async fn check_target(url: &str, allow_private: bool) -> ServiceResult<url::Url> {
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
            "{host:?} resolves to a private, loopback, link-local, metadata or other special-purpose address; webhooks \
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
    let txn = crate::db::begin(db).await?;
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
    let txn = crate::db::begin(db).await?;
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
pub(crate) async fn enqueue_for_event(
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
        let wanted =
            hook.kinds.is_empty() || hook.kinds.split(',').any(|k| k == event.kind.as_str());
        if !wanted {
            continue;
        }
        delivery_row(&hook, event).insert(db).await?;
    }
    Ok(())
}

/// A pending delivery of `event` to `hook`, ready to insert.
pub(crate) fn delivery_row(
    hook: &webhook::Model,
    event: &token_event::Model,
) -> webhook_delivery::ActiveModel {
    webhook_delivery::ActiveModel {
        webhook_id: Set(hook.id),
        tenant_id: Set(hook.tenant_id),
        event_id: Set(event.id),
        status: Set(DeliveryStatus::Pending),
        attempts: Set(0),
        last_status_code: Set(None),
        last_error: Set(None),
        next_attempt_at: Set(event.occurred_at),
        created_at: Set(event.occurred_at),
        delivered_at: Set(None),
        ..Default::default()
    }
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
        .filter(webhook_delivery::Column::Status.eq(DeliveryStatus::Pending))
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
        .filter(webhook_delivery::Column::Status.eq(DeliveryStatus::Pending))
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
    let txn = crate::db::begin(db).await?;
    let mut active: webhook_delivery::ActiveModel = delivery.clone().into();
    active.attempts = Set(attempts);
    let mut hook_active: webhook::ActiveModel = hook.clone().into();
    match outcome {
        Ok(status) => {
            active.status = Set(DeliveryStatus::Delivered);
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
                active.status = Set(DeliveryStatus::Failed);
            } else {
                // The refresh retries' schedule: 30 s doubling up to 1 h, jittered.
                use crate::tokens::policy;
                let wait = policy::backoff(
                    policy::RetryRules::default(),
                    attempts as u32,
                    None,
                    policy::Jitter::draw(),
                );
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
pub(crate) const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

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

    /// One address inside and the addresses just outside every refused range.
    #[test]
    fn special_purpose_addresses_are_forbidden() {
        let forbidden = [
            "0.0.0.0",
            "0.255.255.255",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.0",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.0.170",
            "192.0.2.1",
            "192.31.196.1",
            "192.52.193.1",
            "192.88.99.1",
            "192.168.1.1",
            "192.175.48.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            // IPv6
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:8.8.8.8",
            "::127.0.0.1",
            "::ffff:0:7f00:1",
            "64:ff9b::7f00:1",
            "64:ff9b::808:808",
            "64:ff9b:1::a00:1",
            "100::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "2001:10::1",
            "2001:20::1",
            "2001:db8::1",
            "2001:db8:ffff::1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "3fff::1",
            "5f00::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff05::1:3",
        ];
        for ip in forbidden {
            assert!(is_forbidden(ip.parse().expect(ip)), "{ip} must be refused");
        }
        let allowed = [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.0.3.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "93.184.216.34",
            // IPv6
            "2606:2800:220:1::1",
            "2a00:1450:4001:80b::200e",
            "2001:200::1",
            "2001:4860::8888",
            "2003::1",
            "3ffe::1",
            "3fff:1000::1",
        ];
        for ip in allowed {
            assert!(!is_forbidden(ip.parse().expect(ip)), "{ip} must be allowed");
        }
    }

    /// The resolver the client connects with refuses a host that resolves to loopback, even
    /// when the URL check before it was skipped: the address checked is the one dialled.
    #[tokio::test]
    async fn the_client_connects_only_to_checked_addresses() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut request = vec![0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let url = format!("http://localhost:{port}/hook");
        let guarded = http_client(false).expect("client");
        let err = guarded.post(&url).send().await.expect_err("refused");
        assert!(err.is_connect() || err.is_request(), "{err}");
        let open = http_client(true).expect("client");
        let ok = open.post(&url).send().await.expect("allowed when opted in");
        assert_eq!(ok.status(), 200);
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
