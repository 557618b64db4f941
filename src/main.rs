//! `tokenwarden`: the command line. Parses flags and environment, assembles the process
//! through the library's composition root (`tokenwarden::compose`) and runs it.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use service::Role;
use tokenwarden::{Config, WorkerApp, compose};
use tokio::net::TcpListener;

/// `backup create|verify|restore`.
mod backup_cli;
/// `config export|check`.
mod config_cli;

/// Keeps TikTok and Instagram OAuth connections alive, behind a GraphQL API.
///
/// Without a subcommand it runs everything in one process (embedded mode): migrations,
/// the GraphQL server, the workers and the schedules.
#[derive(Parser)]
#[command(name = "tokenwarden", version, about)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the GraphQL API only (migrates first); jobs are queued for workers.
    Serve,
    /// Run the background workers and schedules; serves /healthz and /readyz.
    Worker,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL) and exit.
    Schema,
    /// Print a new encryption key as `id:base64`, for TOKENWARDEN_KEYS.
    Keygen,
    /// Run the TikTok/Instagram sandbox simulator alone (on TOKENWARDEN_SANDBOX_LISTEN).
    Sandbox,
    /// Manage API keys.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// Manage dashboard users (password + TOTP).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Back up, verify and restore the database (docs/backups.md).
    Backup {
        #[command(subcommand)]
        command: backup_cli::BackupCommand,
    },
    /// Export the OAuth app configuration, or check it against a running instance.
    Config {
        #[command(subcommand)]
        command: config_cli::ConfigCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user. The password is read from TOKENWARDEN_USER_PASSWORD or the first
    /// line of stdin; the TOTP URI and the recovery codes are printed once.
    Create {
        /// Tenant name (created if missing).
        #[arg(long, default_value = "default")]
        tenant: String,
        /// The email the user signs in with (unique across tenants).
        #[arg(long)]
        email: String,
        /// OPERATOR (deployment-wide operations), ADMIN, INTEGRATOR or VIEWER.
        #[arg(long)]
        role: String,
    },
    /// List every user (never secrets).
    List,
    /// Disable a user and end their sessions.
    Disable {
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
enum ApikeyCommand {
    /// Create a key and print it once.
    Create {
        /// Tenant name (created if missing).
        #[arg(long, default_value = "default")]
        tenant: String,
        /// OPERATOR (deployment-wide operations), ADMIN, INTEGRATOR or VIEWER.
        #[arg(long)]
        role: String,
        /// A name to recognise the key by.
        #[arg(long)]
        name: String,
    },
    /// List every key (never the key itself).
    List,
    /// Revoke a key by its numeric id (see `apikey list`).
    Revoke { id: i64 },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tokenwarden::telemetry::init(cli.config.server.log_format);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config;
    match cli.command {
        None => serve(config, true).await,
        Some(Command::Serve) => serve(config, false).await,
        Some(Command::Worker) => worker(config).await,
        Some(Command::Migrate) => {
            service::db::connect_and_migrate(config.database.url.expose()).await?;
            println!("migrations applied");
            Ok(())
        }
        Some(Command::Schema) => {
            print!("{}", api::graphql::schema::sdl());
            Ok(())
        }
        Some(Command::Keygen) => {
            let (id, key) = service::tokens::vault::KeyRing::generate_key()?;
            println!("{id}:{}", key.expose_secret());
            Ok(())
        }
        Some(Command::Sandbox) => sandbox(config).await,
        Some(Command::Apikey { command }) => apikey(config, command).await,
        Some(Command::User { command }) => user(config, command).await,
        Some(Command::Backup { command }) => backup_cli::run(config, command).await,
        Some(Command::Config { command }) => config_cli::run(config, command).await,
    }
}

/// Serves the API; with `with_workers` (the default all-in-one), also runs the workers and
/// schedules in this process.
async fn serve(mut config: Config, with_workers: bool) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("could not listen on {}", config.server.listen))?;
    if config.server.public_url.is_none() {
        // Port 0 means "any": redirect URIs must name the port actually bound.
        config.server.public_url = Some(format!("http://{}", listener.local_addr()?));
    }
    tracing::info!(
        mode = jobs::QueueBackend::for_redis_url(config.queue.redis()).as_str(),
        database = %config.database.redacted(),
        "starting"
    );
    if with_workers {
        // A bad schedule must stop the start, not only the workers.
        config.job_settings().validate()?;
    }
    let drain = config.jobs.refresh_drain;
    let app = compose::build_app(&config).await?;
    let engine = app.state.engine.clone();
    let shutdown = Shutdown::listen();
    let workers = with_workers.then(|| {
        let context = app.job_context();
        let stop = shutdown.clone();
        tokio::spawn(async move { jobs::run_workers(context, stop.wait()).await })
    });
    app.serve(listener, shutdown.clone().wait()).await?;
    if let Some(workers) = workers {
        workers.await??;
    }
    drain_refreshes(&engine, drain).await;
    tracing::info!("stopped");
    Ok(())
}

/// One shutdown signal, awaited by several tasks.
#[derive(Clone)]
struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    fn listen() -> Self {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = tx.send(true);
        });
        Shutdown(rx)
    }

    async fn wait(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

async fn worker(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("could not listen on {}", config.server.listen))?;
    let worker = WorkerApp::build(&config).await?;
    let shutdown = Shutdown::listen();
    let probes = tokio::spawn(api::app::serve_probes(
        worker.probes(),
        listener,
        shutdown.clone().wait(),
    ));
    jobs::run_workers(worker.context.clone(), shutdown.wait()).await?;
    drain_refreshes(&worker.context.engine, config.jobs.refresh_drain).await;
    probes.await??;
    Ok(())
}

/// Before exiting, lets refreshed tokens that wait for the database reach it; what is still
/// pending after `within` is in the refresh journal for the next start.
async fn drain_refreshes(engine: &service::engine::Engine, within: std::time::Duration) {
    if engine.stores.pending() == 0 {
        return;
    }
    tracing::info!(
        pending = engine.stores.pending(),
        "storing refreshed tokens before exit"
    );
    let left = engine.stores.drain(within).await;
    if left > 0 {
        tracing::warn!(
            left,
            journal = ?engine.journal.path(),
            "the database did not take every refreshed token; the journal keeps them for the next start"
        );
    }
}

async fn sandbox(config: Config) -> anyhow::Result<()> {
    let listen = config.providers.sandbox_listen;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("could not listen on {listen}"))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        "sandbox serving TikTok and Instagram simulators under /sandbox"
    );
    let router = ::sandbox::Sandbox::new(::sandbox::SandboxConfig::default()).router();
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

async fn apikey(config: Config, command: ApikeyCommand) -> anyhow::Result<()> {
    let db = service::db::connect_and_migrate(config.database.url.expose()).await?;
    match command {
        ApikeyCommand::Create { tenant, role, name } => {
            let role: Role = role.parse()?;
            let created =
                service::identity::api_keys::create_for_tenant(&db, &tenant, &name, role).await?;
            println!(
                "created API key {} ({}, {role}, tenant {tenant}); it is shown only once:\n{}",
                created.api_key.id,
                created.api_key.name,
                created.key.expose_secret()
            );
        }
        ApikeyCommand::List => {
            println!(
                "{:>6}  {:<8}  {:<10}  {:<12}  {:<25}  name",
                "id", "tenant", "role", "prefix", "status"
            );
            for key in service::identity::api_keys::list_all(&db).await? {
                let status = match key.revoked_at {
                    Some(at) => format!("revoked {}", at.format("%Y-%m-%d %H:%M")),
                    None => "active".to_owned(),
                };
                println!(
                    "{:>6}  {:<8}  {:<10}  {:<12}  {:<25}  {}",
                    key.id, key.tenant_id, key.role, key.key_prefix, status, key.name
                );
            }
        }
        ApikeyCommand::Revoke { id } => {
            let key = service::identity::api_keys::revoke_any(&db, id).await?;
            println!("revoked API key {} ({})", key.id, key.name);
        }
    }
    Ok(())
}

/// The new user's password: TOKENWARDEN_USER_PASSWORD, else the first line of stdin.
fn read_password() -> anyhow::Result<secrecy::SecretString> {
    if let Ok(password) = std::env::var("TOKENWARDEN_USER_PASSWORD") {
        return Ok(password.into());
    }
    use std::io::IsTerminal as _;
    if std::io::stdin().is_terminal() {
        eprint!("Password (shown as typed): ");
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("could not read the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(
        !password.is_empty(),
        "no password: pipe it on stdin or set TOKENWARDEN_USER_PASSWORD"
    );
    Ok(password.into())
}

async fn user(config: Config, command: UserCommand) -> anyhow::Result<()> {
    let db = service::db::connect_and_migrate(config.database.url.expose()).await?;
    match command {
        UserCommand::Create {
            tenant,
            email,
            role,
        } => {
            let role: Role = role.parse()?;
            let password = read_password()?;
            let (vault, _) = compose::load_key_ring(&config)?;
            service::ops::settings::ensure_canary(&db, &vault)
                .await
                .map_err(|err| anyhow::anyhow!("{err}"))?;
            let created =
                service::identity::users::create(&db, &vault, &tenant, &email, role, password)
                    .await?;
            println!(
                "created user {} ({role}, tenant {tenant}).\n\
                 Add this to an authenticator app (shown only once):\n{}\n\
                 Recovery codes (each works once; shown only once):",
                created.user.email,
                created.otpauth_uri.expose_secret()
            );
            for code in &created.recovery_codes {
                println!("{}", code.expose_secret());
            }
        }
        UserCommand::List => {
            println!(
                "{:>6}  {:<8}  {:<10}  {:<25}  {:<25}  email",
                "id", "tenant", "role", "last sign-in", "status"
            );
            for user in service::identity::users::list_all(&db).await? {
                let status = match user.disabled_at {
                    Some(at) => format!("disabled {}", at.format("%Y-%m-%d %H:%M")),
                    None => "active".to_owned(),
                };
                let last = user
                    .last_sign_in_at
                    .map(|at| at.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_else(|| "never".to_owned());
                println!(
                    "{:>6}  {:<8}  {:<10}  {:<25}  {:<25}  {}",
                    user.id, user.tenant_id, user.role, last, status, user.email
                );
            }
        }
        UserCommand::Disable { email } => {
            let user = service::identity::users::disable_by_email(&db, &email).await?;
            println!("disabled user {} and ended their sessions", user.email);
        }
    }
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "could not listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "could not listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested; draining requests");
}
