//! Key rotation under concurrency: one rotation at a time, the key file written atomically,
//! and after any number of concurrent rotations and a restart every token still decrypts.

use entity::oauth_token;
use sea_orm::EntityTrait;
use serde_json::json;

use crate::{
    helpers::{TestApp, error_code},
    on_both_backends,
};

const ROTATE: &str = "mutation { rotateEncryptionKey { activeKeyId } }";

async fn concurrent_rotations_then_a_restart_leave_every_token_decryptable(app: TestApp) {
    let operator = app.key_for_tenant("default", "OPERATOR").await;
    app.seed_connected("default", "rot", 4).await;
    let rotations = futures::future::join_all((0..16).map(|_| {
        let request = app
            .client
            .post(app.url("/graphql"))
            .bearer_auth(&operator)
            .json(&json!({ "query": ROTATE }));
        async move {
            request
                .send()
                .await
                .expect("sent")
                .json::<serde_json::Value>()
                .await
                .expect("json")
        }
    }))
    .await;
    let mut rotated_to = Vec::new();
    for body in &rotations {
        match body["data"]["rotateEncryptionKey"]["activeKeyId"].as_str() {
            Some(id) => rotated_to.push(id.to_owned()),
            // A refusal is allowed (another process holding the lock), never another error.
            None => assert_eq!(error_code(body), Some("BAD_USER_INPUT"), "{body}"),
        }
    }
    assert!(!rotated_to.is_empty(), "{rotations:?}");
    let unique: std::collections::HashSet<_> = rotated_to.iter().collect();
    assert_eq!(
        unique.len(),
        rotated_to.len(),
        "each rotation made its own key"
    );
    // File, memory and database name the same active key.
    let key_file = app.config.security.key_file.clone().expect("key file");
    let text = std::fs::read_to_string(&key_file).expect("key file");
    let file_ring = service::tokens::vault::KeyRing::parse_key_file(&text).expect("parses");
    let in_memory = app.jobs.engine.vault().active_key_id().to_owned();
    let in_db = service::ops::settings::get(&app.db, service::ops::rotation::ACTIVE_KEY)
        .await
        .expect("setting")
        .expect("active key recorded");
    assert_eq!(file_ring.active_key_id(), in_db);
    assert_eq!(in_memory, in_db);
    for id in &rotated_to {
        assert!(file_ring.contains(id), "{id} is in the key file");
    }
    // Tokens written while the keys changed (a refresh under each key) and the rewrap.
    jobs::rotate_keys::run(&app.jobs).await.expect("rewrap");

    // A restart: a new engine from the key file and the database alone.
    let engine = tokenwarden::compose::build_engine(&app.db, &app.config)
        .await
        .expect("restarts");
    assert_eq!(engine.vault().active_key_id(), in_db);
    let rows = oauth_token::Entity::find()
        .all(&app.db)
        .await
        .expect("tokens");
    assert_eq!(rows.len(), 4);
    for row in rows {
        for kind in [
            service::tokens::vault::TokenKind::Access,
            service::tokens::vault::TokenKind::Refresh,
        ] {
            service::tokens::open(&engine.vault(), &row, kind).unwrap_or_else(|err| {
                panic!("token of account {} decrypts: {err}", row.account_id)
            });
        }
    }
    // The server keeps serving and rotating.
    let data = app.gql_ok(&operator, ROTATE, json!({})).await;
    assert!(data["rotateEncryptionKey"]["activeKeyId"].is_string());
}

async fn rotating_to_the_active_key_is_refused(app: TestApp) {
    let operator = app.key_for_tenant("default", "OPERATOR").await;
    let active = app
        .gql_ok(&operator, "{ keyRotation { activeKeyId } }", json!({}))
        .await["keyRotation"]["activeKeyId"]
        .as_str()
        .expect("id")
        .to_owned();
    let body = app
        .gql(
            Some(&operator),
            "mutation($id: String) { rotateEncryptionKey(keyId: $id) { activeKeyId } }",
            json!({ "id": active }),
        )
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    let rotated = app.gql_ok(&operator, ROTATE, json!({})).await;
    assert_ne!(rotated["rotateEncryptionKey"]["activeKeyId"], active);
}

on_both_backends!(
    concurrent_rotations_then_a_restart_leave_every_token_decryptable,
    rotating_to_the_active_key_is_refused,
);
