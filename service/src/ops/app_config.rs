//! The OAuth application configuration a deployment needs from the TikTok and Meta portals
//! (redirect URIs, callback and webhook URLs, scopes, app type), without secrets: what
//! `tokenwarden config export` prints, what `oauthAppConfig` answers, and the comparison
//! `tokenwarden config check` makes between the two.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    domain::Platform,
    providers::{TikTokAppType, instagram, tiktok},
};

/// Both apps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OAuthAppConfig {
    /// The public base URL every URL below starts with (TOKENWARDEN_PUBLIC_URL).
    pub public_url: String,
    /// No platform credentials: the sandbox simulator stands in (demo mode).
    pub sandbox: bool,
    pub tiktok: TikTokApp,
    pub instagram: InstagramApp,
}

/// The TikTok app (developers.tiktok.com, Manage apps).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TikTokApp {
    /// TIKTOK_CLIENT_KEY (public; the secret is never shown).
    pub client_key: Option<String>,
    pub client_secret_configured: bool,
    /// `web` or `desktop` (TOKENWARDEN_TIKTOK_APP_TYPE): the Login Kit platform.
    pub app_type: String,
    /// `none` (web) or `S256-hex` (desktop).
    pub pkce: String,
    /// Login Kit, Redirect URI.
    pub redirect_uri: String,
    /// Webhooks, Callback URL (`authorization.removed`).
    pub webhook_callback_url: String,
    /// Scopes requested by default; each must be enabled for the app.
    pub scopes: Vec<String>,
}

/// The Instagram app (Meta app, Instagram API with Instagram Login).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstagramApp {
    /// INSTAGRAM_CLIENT_ID, the Instagram app id (public; the secret is never shown).
    pub client_id: Option<String>,
    pub client_secret_configured: bool,
    /// Business login settings, OAuth redirect URI.
    pub redirect_uri: String,
    /// Business login settings, Deauthorize callback URL.
    pub deauthorize_callback_url: String,
    /// Business login settings, Data deletion request URL.
    pub data_deletion_request_url: String,
    /// Where Meta sends users to see a deletion's status (linked from the callback answer).
    pub data_deletion_status_url: String,
    pub scopes: Vec<String>,
    /// The Graph API version of versioned calls (TOKENWARDEN_INSTAGRAM_GRAPH_VERSION).
    pub graph_api_version: String,
}

/// What the configuration says, as plain values (assembled by the binary's configuration).
pub struct AppConfigInput<'a> {
    pub public_url: &'a str,
    pub sandbox: bool,
    pub tiktok_client_key: Option<&'a str>,
    pub tiktok_client_secret_configured: bool,
    pub tiktok_app_type: TikTokAppType,
    pub instagram_client_id: Option<&'a str>,
    pub instagram_client_secret_configured: bool,
    pub instagram_graph_version: &'a str,
}

fn scopes(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

impl OAuthAppConfig {
    /// The configuration a deployment with these settings needs in the portals.
    pub fn describe(input: &AppConfigInput<'_>) -> Self {
        let base = input.public_url.trim_end_matches('/');
        let redirect = |p: Platform| format!("{base}/oauth/callback/{}", p.as_str());
        Self {
            public_url: base.to_owned(),
            sandbox: input.sandbox,
            tiktok: TikTokApp {
                client_key: input.tiktok_client_key.map(str::to_owned),
                client_secret_configured: input.tiktok_client_secret_configured,
                app_type: match input.tiktok_app_type {
                    TikTokAppType::Web => "web",
                    TikTokAppType::Desktop => "desktop",
                }
                .into(),
                pkce: match input.tiktok_app_type {
                    TikTokAppType::Web => "none",
                    TikTokAppType::Desktop => "S256-hex",
                }
                .into(),
                redirect_uri: redirect(Platform::TikTok),
                webhook_callback_url: format!("{base}/providers/tiktok/webhook"),
                scopes: scopes(tiktok::DEFAULT_SCOPES),
            },
            instagram: InstagramApp {
                client_id: input.instagram_client_id.map(str::to_owned),
                client_secret_configured: input.instagram_client_secret_configured,
                redirect_uri: redirect(Platform::Instagram),
                deauthorize_callback_url: format!("{base}/providers/instagram/deauthorize"),
                data_deletion_request_url: format!("{base}/providers/instagram/data-deletion"),
                data_deletion_status_url: format!(
                    "{base}/providers/instagram/data-deletion/status"
                ),
                scopes: scopes(instagram::DEFAULT_SCOPES),
                graph_api_version: input.instagram_graph_version.to_owned(),
            },
        }
    }
}

/// One setting that differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// Dotted path, e.g. `tiktok.redirectUri`.
    pub field: String,
    pub here: String,
    pub running: String,
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, value, out);
            }
        }
        Value::Null => out.push((prefix.to_owned(), "(unset)".into())),
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        Value::Array(items) => out.push((
            prefix.to_owned(),
            items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(" "),
        )),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

/// Every setting that differs between `here` and `running`, by dotted path.
pub fn differences(here: &OAuthAppConfig, running: &OAuthAppConfig) -> Vec<Difference> {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    flatten("", &serde_json::to_value(here).unwrap_or_default(), &mut a);
    flatten(
        "",
        &serde_json::to_value(running).unwrap_or_default(),
        &mut b,
    );
    a.into_iter()
        .zip(b)
        .filter(|((_, x), (_, y))| x != y)
        .map(|((field, here), (_, running))| Difference {
            field,
            here,
            running,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(public_url: &str, app_type: TikTokAppType) -> AppConfigInput<'_> {
        AppConfigInput {
            public_url,
            sandbox: false,
            tiktok_client_key: Some("awx123"),
            tiktok_client_secret_configured: true,
            tiktok_app_type: app_type,
            instagram_client_id: None,
            instagram_client_secret_configured: false,
            instagram_graph_version: "v23.0",
        }
    }

    #[test]
    fn urls_follow_the_public_url() {
        let config =
            OAuthAppConfig::describe(&input("https://tw.example.com/", TikTokAppType::Web));
        assert_eq!(
            config.tiktok.redirect_uri,
            "https://tw.example.com/oauth/callback/tiktok"
        );
        assert_eq!(
            config.tiktok.webhook_callback_url,
            "https://tw.example.com/providers/tiktok/webhook"
        );
        assert_eq!(
            config.instagram.deauthorize_callback_url,
            "https://tw.example.com/providers/instagram/deauthorize"
        );
        assert_eq!(config.tiktok.pkce, "none");
        let json = serde_json::to_string(&config).expect("json");
        assert!(
            !json.to_lowercase().contains("secret\":\""),
            "no secret values: {json}"
        );
    }

    #[test]
    fn differences_name_the_field() {
        let here = OAuthAppConfig::describe(&input("https://a.example", TikTokAppType::Desktop));
        let running = OAuthAppConfig::describe(&input("https://a.example", TikTokAppType::Web));
        let diff = differences(&here, &running);
        let fields: Vec<&str> = diff.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["tiktok.appType", "tiktok.pkce"]);
        assert_eq!(diff[0].here, "desktop");
        assert_eq!(diff[0].running, "web");
        assert!(differences(&here, &here).is_empty());
    }
}
