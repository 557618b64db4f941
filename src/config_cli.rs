//! `tokenwarden config export|check`: the OAuth app configuration (no secrets) of this
//! configuration, and its comparison with a running instance's.

use anyhow::Context as _;
use clap::Subcommand;
use service::ops::app_config::{self, OAuthAppConfig};
use tokenwarden::Config;

#[derive(Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the OAuth app configuration both portals need (redirect URIs, callback and
    /// webhook URLs, scopes, TikTok app type) as JSON. Never secrets.
    Export,
    /// Compare this configuration's OAuth app settings with those of a running instance
    /// (its `oauthAppConfig` query, ADMIN). Exits non-zero when they differ.
    Check {
        /// The running instance's base URL (e.g. https://tw.example.com).
        #[arg(long, env = "TOKENWARDEN_CHECK_URL")]
        url: String,
        /// An ADMIN API key of that instance.
        #[arg(long, env = "TOKENWARDEN_API_KEY", hide_env_values = true)]
        api_key: String,
    },
}

pub(crate) async fn run(config: Config, command: ConfigCommand) -> anyhow::Result<()> {
    let here = config.oauth_app_config();
    match command {
        ConfigCommand::Export => {
            println!("{}", serde_json::to_string_pretty(&here)?);
            Ok(())
        }
        ConfigCommand::Check { url, api_key } => {
            let running = fetch(&url, &api_key).await?;
            let differences = app_config::differences(&here, &running);
            if differences.is_empty() {
                println!(
                    "the OAuth app configuration matches the instance at {}",
                    url.trim_end_matches('/')
                );
                return Ok(());
            }
            println!("{:<40}  {:<50}  running", "setting", "this configuration");
            for d in &differences {
                println!("{:<40}  {:<50}  {}", d.field, d.here, d.running);
            }
            anyhow::bail!(
                "{} OAuth app setting(s) differ from the instance at {}",
                differences.len(),
                url.trim_end_matches('/')
            )
        }
    }
}

/// The running instance's configuration, through its GraphQL API.
async fn fetch(url: &str, api_key: &str) -> anyhow::Result<OAuthAppConfig> {
    let endpoint = format!("{}/graphql", url.trim_end_matches('/'));
    let body: serde_json::Value = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .build()?
        .post(&endpoint)
        .bearer_auth(api_key)
        .json(&serde_json::json!({ "query": api::graphql::app_config::CHECK_QUERY }))
        .send()
        .await
        .with_context(|| format!("could not reach {endpoint}"))?
        .json()
        .await
        .with_context(|| format!("{endpoint} did not answer JSON"))?;
    if let Some(errors) = body.get("errors") {
        anyhow::bail!("{endpoint} refused the query: {errors}");
    }
    serde_json::from_value(body["data"]["oauthAppConfig"].clone())
        .with_context(|| format!("unexpected answer from {endpoint}"))
}
