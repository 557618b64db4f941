//! The OPERATOR role: deployment-wide operations (key rotation, provider statistics,
//! detailed system health, readiness details) are refused to tenant ADMIN keys with
//! FORBIDDEN, allowed to OPERATOR keys (made on the command line only), and audited
//! deployment-wide.

use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, error_code},
    on_both_backends,
};

async fn tenant_admins_are_refused_deployment_operations(app: TestApp) {
    let acme = app.key_for_tenant("acme", "ADMIN").await;
    for key in [&app.admin_key, &acme] {
        for query in [
            "mutation { rotateEncryptionKey { activeKeyId } }",
            "{ keyRotation { activeKeyId } }",
            "{ providerStats { requests } }",
            "{ providerStats(window: \"1h\") { requests } }",
        ] {
            let body = app.gql(Some(key), query, json!({})).await;
            assert_eq!(error_code(&body), Some("FORBIDDEN"), "{query}: {body}");
            assert!(
                body["errors"][0]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("OPERATOR")),
                "the message names the role: {body}"
            );
        }
    }
    // System health: an ADMIN sees whether the deployment works, not its details.
    let body = app
        .gql(
            Some(&app.admin_key),
            "{ systemHealth { database encryption providers { platform available } encryptionError keyRotation { activeKeyId } } }",
            json!({}),
        )
        .await;
    assert_eq!(body["data"]["systemHealth"]["database"], true, "{body}");
    assert_eq!(body["data"]["systemHealth"]["encryption"], true);
    assert!(body["data"]["systemHealth"]["keyRotation"].is_null());
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{body}");
    for error in errors {
        assert_eq!(error["extensions"]["code"], "FORBIDDEN", "{body}");
    }
    let ok = app
        .gql_ok(
            &app.admin_key,
            "{ systemHealth { database providers { platform } } }",
            json!({}),
        )
        .await;
    assert_eq!(ok["systemHealth"]["database"], true);

    // No API key can make an OPERATOR key, not even an operator's.
    let operator = app.key_for_tenant("default", "OPERATOR").await;
    for key in [&app.admin_key, &operator] {
        let body = app
            .gql(
                Some(key),
                "mutation { createApiKey(input: {name: \"up\", role: OPERATOR}) { key } }",
                json!({}),
            )
            .await;
        assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    }
    // A tenant ADMIN cannot revoke the operator's key either.
    let keys = app
        .gql_ok(&operator, "{ apiKeys { nodes { id role } } }", json!({}))
        .await;
    let operator_id = keys["apiKeys"]["nodes"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["role"] == "OPERATOR")
        .map(|k| k["id"].clone())
        .expect("the operator key is listed");
    let body = app
        .gql(
            Some(&app.admin_key),
            "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }",
            json!({ "id": operator_id }),
        )
        .await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    // The server keeps serving the operator.
    app.gql_ok(&operator, "{ keyRotation { activeKeyId } }", json!({}))
        .await;
}

async fn operators_run_them_and_the_audit_is_deployment_wide(app: TestApp) {
    let operator = app.key_for_tenant("default", "OPERATOR").await;
    let acme_operator = app.key_for_tenant("acme", "OPERATOR").await;
    let acme_admin = app.key_for_tenant("acme", "ADMIN").await;
    let health = app
        .gql_ok(
            &operator,
            "{ systemHealth { database encryptionError keyRotation { activeKeyId remaining } } }",
            json!({}),
        )
        .await;
    assert!(health["systemHealth"]["keyRotation"]["activeKeyId"].is_string());
    assert!(health["systemHealth"]["encryptionError"].is_null());
    let stats = app
        .gql_ok(
            &operator,
            "{ providerStats(window: \"1h\") { platform } }",
            json!({}),
        )
        .await;
    assert!(stats["providerStats"].is_array());
    let rotated = app
        .gql_ok(
            &operator,
            "mutation { rotateEncryptionKey { activeKeyId } }",
            json!({}),
        )
        .await;
    let new_key = rotated["rotateEncryptionKey"]["activeKeyId"].clone();

    let rotations = |key: String| {
        let app = &app;
        async move {
            app.gql_ok(
                &key,
                "{ auditLog(filter: {actions: [ENCRYPTION_KEY_ROTATED]}) { totalCount nodes { actor deploymentWide details } } }",
                json!({}),
            )
            .await["auditLog"]
                .clone()
        }
    };
    // Every operator sees it, whichever tenant their key is in...
    for key in [&operator, &acme_operator] {
        let log = rotations(key.clone()).await;
        assert_eq!(log["totalCount"], 1, "{log}");
        let entry = &log["nodes"][0];
        assert_eq!(entry["deploymentWide"], true);
        assert_eq!(entry["details"]["activeKeyId"], new_key);
        assert!(
            entry["actor"]
                .as_str()
                .is_some_and(|a| a.starts_with("api_key:")),
            "{entry}"
        );
    }
    // ...and no tenant's ADMIN does.
    for key in [&app.admin_key, &acme_admin] {
        let log = rotations(key.clone()).await;
        assert_eq!(log["totalCount"], 0, "{log}");
    }
    // The creation of an operator key (command line) is deployment-wide too.
    let created = app
        .gql_ok(
            &operator,
            "{ auditLog(filter: {actions: [API_KEY_CREATED]}) { nodes { actor deploymentWide details } } }",
            json!({}),
        )
        .await;
    let operator_creations: Vec<&Value> = created["auditLog"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["details"]["role"] == "OPERATOR")
        .collect();
    assert_eq!(operator_creations.len(), 2, "{created}");
    assert!(
        operator_creations
            .iter()
            .all(|n| n["deploymentWide"] == true && n["actor"] == "cli")
    );
}

async fn readiness_details_need_an_operator_key(app: TestApp) {
    let get = |key: Option<String>| {
        let mut request = app.client.get(app.url("/readyz"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        async move {
            let response = request.send().await.expect("sent");
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["cache-control"], "no-store");
            response.json::<Value>().await.expect("json")
        }
    };
    for key in [
        None,
        Some(app.admin_key.clone()),
        Some("tw_not_a_key".to_owned()),
    ] {
        assert_eq!(get(key).await, json!({ "status": "ready" }));
    }
    let operator = app.key_for_tenant("default", "OPERATOR").await;
    let detailed = get(Some(operator)).await;
    assert_eq!(detailed["status"], "ready");
    assert_eq!(detailed["checks"]["database"], "ok", "{detailed}");
    assert_eq!(detailed["checks"]["encryption"], "ok", "{detailed}");
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("tokenwarden_ready{check=\"database\"} 1"),
        "{metrics}"
    );
}

on_both_backends!(
    tenant_admins_are_refused_deployment_operations,
    operators_run_them_and_the_audit_is_deployment_wide,
    readiness_details_need_an_operator_key,
);
