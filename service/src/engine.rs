//! The long-lived pieces token work needs besides the database: the key ring, the provider
//! clients, the per-account refresh locks and the connection settings. Built once at
//! startup and shared by the API and the jobs.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use crate::{
    domain::Platform,
    events::EventBus,
    providers::{ProviderError, Providers},
    tokens::{
        batch::{BatchFailed, Combiner, LeaseRequest, LoadRequest, Loaded, StoreRequest, Stored},
        journal::Journal,
        lanes::Lanes,
        vault::KeyRing,
    },
};

/// Settings of connections and refreshes.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// Public base URL, without trailing slash; redirect URIs are built from it.
    pub public_url: String,
    /// Allowed `redirectAfter` prefixes (`https://app.example.com/`, ...).
    pub allowed_redirects: Vec<String>,
    /// How long a started connection may take.
    pub state_ttl: Duration,
    /// A refresh asked this soon after a successful one returns the fresh token as is.
    pub min_refresh_interval: Duration,
    /// `accessToken` refreshes first when less than this remains.
    pub access_token_margin: Duration,
    /// How long a process may hold the database refresh lease of one token.
    pub refresh_lease: Duration,
    /// How long a refresh waits for another process's refresh of the same account.
    pub lease_wait: Duration,
    /// The key file, when keys come from one (rotation can then generate keys).
    pub key_file: Option<std::path::PathBuf>,
    /// Allow webhooks to private, loopback and link-local addresses (tests, intranets).
    pub webhook_allow_private: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:8080".into(),
            allowed_redirects: Vec::new(),
            state_ttl: Duration::from_secs(600),
            min_refresh_interval: Duration::from_secs(10),
            access_token_margin: Duration::from_secs(300),
            refresh_lease: Duration::from_secs(120),
            lease_wait: Duration::from_secs(15),
            key_file: None,
            webhook_allow_private: false,
        }
    }
}

/// What the last refresh of an account ended with, shared with callers that waited.
#[derive(Clone, Debug)]
pub(crate) struct LastOutcome {
    pub at: Instant,
    pub error: Option<ProviderError>,
}

type Slot = Arc<tokio::sync::Mutex<Option<LastOutcome>>>;

/// One async mutex per account, so a process never runs two refreshes of one account.
#[derive(Debug, Default)]
pub struct RefreshLocks {
    slots: Mutex<HashMap<i64, Slot>>,
}

impl RefreshLocks {
    /// The lock of `account_id` (created on first use; idle ones are dropped).
    pub(crate) fn slot(&self, account_id: i64) -> Slot {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slots.len() > 1024 {
            // Only this map holds idle slots.
            slots.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        slots.entry(account_id).or_default().clone()
    }
}

/// Counts refreshed token sets that are not stored yet, so a graceful shutdown can wait
/// for them.
#[derive(Debug, Default)]
pub struct Stores {
    count: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

/// One store in progress (see [`Stores::enter`]).
pub(crate) struct Storing<'a>(&'a Stores);

impl Drop for Storing<'_> {
    fn drop(&mut self) {
        if self
            .0
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.0.idle.notify_waiters();
        }
    }
}

impl Stores {
    pub(crate) fn enter(&self) -> Storing<'_> {
        self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Storing(self)
    }

    /// Refreshed token sets waiting for the database.
    pub fn pending(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until every pending store is done, or `timeout` passes. Returns how many are
    /// still pending (those are in the journal).
    pub async fn drain(&self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let idle = self.idle.notified();
            let pending = self.pending();
            if pending == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.pending();
            }
        }
    }
}

/// The shared token machinery.
#[derive(Debug)]
pub struct Engine {
    vault: RwLock<Arc<KeyRing>>,
    pub providers: Arc<Providers>,
    /// Background refreshes leave part of each rate limit to on-demand ones.
    pub lanes: Lanes,
    pub locks: RefreshLocks,
    pub settings: EngineSettings,
    /// Where committed token events are published.
    pub events: EventBus,
    /// Identifies this process in refresh leases.
    pub instance: String,
    /// Where refreshed tokens go while the database cannot take them.
    pub journal: Journal,
    /// Refreshed tokens not stored yet.
    pub stores: Stores,
    /// Held while a scheduled sweep pass runs in this process: a tick that finds it taken
    /// skips, so passes that outlast their period never pile up (each would hold a
    /// pooled connection).
    pub sweep_pass: tokio::sync::Mutex<()>,
    /// Queued refreshes' accounts and tokens loaded in batches (see [`crate::tokens::batch`]).
    pub(crate) reads: Combiner<LoadRequest, Result<Loaded, BatchFailed>>,
    /// Refresh leases taken in batches (see [`crate::tokens::batch`]).
    pub(crate) leases: Combiner<LeaseRequest, Result<bool, BatchFailed>>,
    /// Refreshed tokens stored in batches (see [`crate::tokens::batch`]).
    pub(crate) writes: Combiner<StoreRequest, Result<Stored, BatchFailed>>,
    /// Attempt rows inserted in batches (see [`crate::tokens::batch`]).
    pub(crate) attempts: Combiner<entity::refresh_attempt::ActiveModel, Result<(), BatchFailed>>,
}

impl Engine {
    /// Builds the engine.
    pub fn new(
        vault: KeyRing,
        providers: Providers,
        settings: EngineSettings,
        events: EventBus,
    ) -> Self {
        let instance = format!(
            "{}-{}",
            std::process::id(),
            crate::providers::new_state()
                .chars()
                .take(8)
                .collect::<String>()
        );
        Self {
            vault: RwLock::new(Arc::new(vault)),
            lanes: Lanes::new(&providers, crate::tokens::lanes::DEFAULT_RESERVE),
            providers: Arc::new(providers),
            locks: RefreshLocks::default(),
            settings,
            events,
            instance,
            journal: Journal::disabled(),
            stores: Stores::default(),
            sweep_pass: tokio::sync::Mutex::new(()),
            reads: Combiner::default(),
            leases: Combiner::default(),
            writes: Combiner::default(),
            attempts: Combiner::default(),
        }
    }

    /// Journals results this process cannot store to `dir` (see [`crate::tokens::journal`]).
    pub fn with_journal_dir(mut self, dir: &std::path::Path, deployment: &str) -> Self {
        self.journal = Journal::in_dir(dir, deployment, &self.instance);
        self
    }

    /// The current key ring.
    pub fn vault(&self) -> Arc<KeyRing> {
        self.vault
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces the key ring (key rotation).
    pub(crate) fn set_vault(&self, vault: KeyRing) {
        *self
            .vault
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(vault);
    }

    /// The OAuth redirect URI of a platform: `<public url>/oauth/callback/<platform>`.
    pub fn redirect_uri(&self, platform: Platform) -> String {
        format!(
            "{}/oauth/callback/{}",
            self.settings.public_url,
            platform.as_str()
        )
    }
}
