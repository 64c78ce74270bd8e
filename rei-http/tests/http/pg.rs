//! The API on PostgreSQL: its quotes and replay slots are on the pool that does not wait for the WAL flush,
//! and the replay claims and responses of concurrent POSTs are batched; the money moves must not notice.

use std::sync::Arc;

use rei_core::money::Money;
use serde_json::json;

use crate::support::{fresh_key, json, problem, start_pg};

#[tokio::test]
async fn on_postgres_a_cycle_moves_the_money_once_and_keys_replay() {
    // Proves quote -> confirm -> capture on PostgreSQL, each replayed by its key, the same key with another body
    // refused, and 30 concurrent confirms under one key holding once.
    let s = Arc::new(start_pg().await);
    s.top_up(1, "100.00", "pg-p1").await;
    let (status, q) = json(s.post("/v1/quotes", &json!({"user_id": 1, "product": "image.nano-banana"})).await).await;
    assert_eq!(status, 201, "{q}");
    let price = Money::parse(q["price"].as_str().expect("price")).expect("money");
    let path = format!("/v1/quotes/{}/confirm", q["id"].as_str().expect("id"));
    let key = fresh_key();
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let (s, path, key) = (s.clone(), path.clone(), key.clone());
            tokio::spawn(async move { json(s.post_keyed(&path, &json!({"user_id": 1}), &key).await).await })
        })
        .collect();
    let mut held = Vec::new();
    for t in tasks {
        let (status, body) = t.await.expect("join");
        match status {
            201 => held.push(body),
            409 => assert_eq!(body["code"], "idempotency-key-in-progress"),
            other => panic!("{other}: {body}"),
        }
    }
    assert!(!held.is_empty() && held.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(Some(s.available(1).await), Money::parse("100.00").expect("money").checked_sub(price));
    problem(s.post_keyed(&path, &json!({"user_id": 2}), &key).await, 409, "idempotency-key-reused").await;
    let hold = held[0]["hold_id"].as_str().expect("hold").to_owned();
    let capture = format!("/v1/holds/{hold}/capture");
    let ckey = fresh_key();
    let (status, first) = json(s.post_keyed(&capture, &json!({"amount": q["price"]}), &ckey).await).await;
    assert_eq!(status, 200, "{first}");
    let again = s.post_keyed(&capture, &json!({"amount": q["price"]}), &ckey).await;
    assert_eq!(again.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    assert_eq!(json(again).await.1, first);
    assert_eq!(Some(s.available(1).await), Money::parse("100.00").expect("money").checked_sub(price));
    let (_, page) = json(s.get("/v1/users/1/ledger").await).await;
    let kinds: Vec<&str> =
        page["entries"].as_array().expect("entries").iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds, vec!["capture", "hold", "top_up"]);
    assert!(s.engine.billing().verify().await.expect("verify").is_clean());
}
