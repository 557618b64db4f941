//! `fanout`: N real WebSocket subscriptions to one `tokenwarden` process, one failure-type
//! event, delivery latency percentiles and the server's memory per subscriber.

use std::{
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
    sync::Mutex,
};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{Message, client::IntoClientRequest},
};

/// Arguments of `fanout`.
#[derive(clap::Args, Clone, Debug)]
pub struct FanoutArgs {
    /// WebSocket subscribers to open.
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
    /// Connections opened at once.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// The tokenwarden binary (default: next to this one).
    #[arg(long)]
    server: Option<std::path::PathBuf>,
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS missing")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// Runs the benchmark.
pub async fn fanout(args: FanoutArgs) -> anyhow::Result<()> {
    let server = match args.server {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .context("no binary directory")?
            .join("tokenwarden"),
    };
    let server = std::fs::canonicalize(&server).unwrap_or(server);
    anyhow::ensure!(
        server.exists(),
        "{} not found: build it first (cargo build --release)",
        server.display()
    );
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(&server)
        .current_dir(dir.path())
        .env("TOKENWARDEN_LISTEN", "127.0.0.1:0")
        .env("TOKENWARDEN_LOG_FORMAT", "json")
        .env("RUST_LOG", "warn,api::app=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", server.display()))?;
    let pid = child.id().context("no pid")?;
    let mut stdout = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut stderr = BufReader::new(child.stderr.take().context("stderr")?).lines();
    let mut key = None;
    let mut addr = None;
    while key.is_none() || addr.is_none() {
        tokio::select! {
            line = stdout.next_line() => {
                if let Some(line) = line?
                    && let Some(k) = line.trim().strip_prefix("tw_")
                {
                    key = Some(format!("tw_{k}"));
                }
            }
            line = stderr.next_line() => {
                let Some(line) = line? else { anyhow::bail!("the server exited") };
                if let Ok(log) = serde_json::from_str::<Value>(&line)
                    && log["message"] == "serving GraphQL at /graphql"
                {
                    addr = log["addr"].as_str().map(str::to_owned);
                }
            }
        }
    }
    let (key, addr) = (key.context("key")?, addr.context("addr")?);
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(pid)?;

    // Open the subscribers.
    let received: Arc<Mutex<Vec<Instant>>> =
        Arc::new(Mutex::new(Vec::with_capacity(args.subscribers)));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(args.subscribers.max(1));
    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(args.connect_concurrency));
    for _ in 0..args.subscribers {
        let permit = semaphore.clone().acquire_owned().await?;
        let url = format!("ws://{addr}/graphql/ws");
        let key = key.clone();
        let received = received.clone();
        let ready = ready_tx.clone();
        tokio::spawn(async move {
            let run = async {
                let mut request = url.into_client_request()?;
                request
                    .headers_mut()
                    .insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
                let (mut ws, _) = connect_async(request).await?;
                ws.send(Message::text(
                    json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {key}") } }).to_string(),
                ))
                .await?;
                while let Some(msg) = ws.next().await {
                    if let Message::Text(text) = msg?
                        && text.contains("connection_ack")
                    {
                        break;
                    }
                }
                ws.send(Message::text(
                    json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { tokenEvents(filter: {kinds: [CONNECTED]}) { id kind } }" } }).to_string(),
                ))
                .await?;
                drop(permit);
                let _ = ready.send(()).await;
                while let Some(msg) = ws.next().await {
                    match msg? {
                        Message::Text(text) if text.contains("\"next\"") => {
                            received.lock().await.push(Instant::now());
                            break;
                        }
                        Message::Text(text) if text.contains("\"ping\"") => {
                            ws.send(Message::text(json!({ "type": "pong" }).to_string()))
                                .await?;
                        }
                        _ => {}
                    }
                }
                // Keep the socket open until the run ends.
                futures::future::pending::<()>().await;
                anyhow::Ok(())
            };
            if let Err(err) = run.await {
                eprintln!("subscriber failed: {err:#}");
            }
        });
    }
    drop(ready_tx);
    for _ in 0..args.subscribers {
        ready_rx
            .recv()
            .await
            .context("a subscriber failed to start")?;
    }
    let connect_s = started.elapsed().as_secs_f64();
    // Let every subscription attach to the event bus, then measure memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_kib(pid)?;

    // One event: connect an account through the embedded sandbox.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let start: Value = client
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(&key)
        .json(&json!({ "query": "mutation { startConnection(input: {platform: TIKTOK}) { authorizationUrl } }" }))
        .send()
        .await?
        .json()
        .await?;
    let launch = start["data"]["startConnection"]["authorizationUrl"]
        .as_str()
        .context("authorization url")?
        .to_owned();
    // The launch URL sets the flow's cookie and redirects to the platform (the sandbox),
    // which redirects to the callback; the callback needs the cookie.
    let launched = client.get(&launch).send().await?;
    let authorize = launched.headers()["location"].to_str()?.to_owned();
    let cookie = launched.headers()["set-cookie"]
        .to_str()?
        .split(';')
        .next()
        .context("flow cookie")?
        .to_owned();
    let callback = client.get(&authorize).send().await?;
    let callback = callback.headers()["location"].to_str()?.to_owned();
    let sent = Instant::now();
    client
        .get(&callback)
        .header("cookie", cookie)
        .send()
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.lock().await.len() < args.subscribers && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let times = received.lock().await.clone();
    let mut latencies: Vec<f64> = times
        .iter()
        .map(|t| t.saturating_duration_since(sent).as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let per_subscriber_kib =
        (rss_after.saturating_sub(rss_before)) as f64 / args.subscribers.max(1) as f64;
    println!("phase                     value");
    println!(
        "subscribers opened        {} in {connect_s:.2} s",
        args.subscribers
    );
    println!("events delivered          {}", latencies.len());
    println!("server RSS before         {rss_before} KiB");
    println!("server RSS with subs      {rss_after} KiB");
    println!(
        "fanout: subscribers={} delivered={} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} server_kib_per_subscriber={per_subscriber_kib:.1}",
        args.subscribers,
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN),
    );
    let _ = child.kill().await;
    Ok(())
}
