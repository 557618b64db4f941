//! The webhook SSRF guard through the API, with the production setting: every special-purpose
//! range is refused at registration (BAD_USER_INPUT), a public address is accepted. The full
//! table, address by address with its boundaries, is in service/src/events/webhooks.rs.

use serde_json::json;

use crate::helpers::{Backend, TestApp, error_code};

const REGISTER: &str = "mutation($url: String!) { registerWebhook(input: {url: $url, kinds: [RECONNECT_REQUIRED]}) { webhook { url } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_purpose_targets_are_refused_and_public_ones_accepted() {
    let app = TestApp::spawn_with(Backend::Sqlite, &["--webhook-allow-private", "false"]).await;
    let refused = [
        "http://127.0.0.1/h",
        "http://localhost/h",
        "http://10.0.0.1/h",
        "http://100.64.0.1/h",
        "http://169.254.169.254/latest/meta-data",
        "http://192.0.0.170/h",
        "http://192.0.2.1/h",
        "http://198.18.0.1/h",
        "http://198.51.100.1/h",
        "http://203.0.113.1/h",
        "http://240.0.0.1/h",
        "http://0.0.0.0/h",
        "http://[::1]/h",
        "http://[::ffff:127.0.0.1]/h",
        "http://[::ffff:a9fe:a9fe]/h",
        "http://[64:ff9b::a9fe:a9fe]/h",
        "http://[64:ff9b:1::1]/h",
        "http://[2002:7f00:1::]/h",
        "http://[2001:db8::1]/h",
        "http://[3fff::1]/h",
        "http://[2001::1]/h",
        "http://[2001:2::1]/h",
        "http://[fd00::1]/h",
        "http://[fe80::1]/h",
        "http://[ff02::1]/h",
    ];
    for url in refused {
        let body = app
            .gql(Some(&app.admin_key), REGISTER, json!({ "url": url }))
            .await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{url}: {body}");
    }
    // Positive controls: public addresses (literals, so no DNS is needed) are registered.
    for url in [
        "https://93.184.216.34/hook",
        "https://[2606:2800:220:1::1]/hook",
    ] {
        let data = app
            .gql_ok(&app.admin_key, REGISTER, json!({ "url": url }))
            .await;
        assert_eq!(data["registerWebhook"]["webhook"]["url"], url);
    }
}
