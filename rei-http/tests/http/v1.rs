//! Every `/v1` route and its documented errors.

use rei_core::access::Scope;
use rei_core::money::Money;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{fresh_key, json, problem, start};

const PRODUCT: &str = "image.nano-banana";

#[tokio::test]
async fn a_user_reads_back_with_the_balance_and_keys_are_checked() {
    // Proves GET /v1/users/{id}: the balance the ledger has; no key, a wrong key, a revoked key -> 401; a key
    // without the scope -> 403.
    let s = start().await;
    s.top_up(7, "150.00", "pay-7").await;
    let (status, body) = json(s.get("/v1/users/7").await).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"user_id": 7, "available": "150.00", "held": "0.00", "overdraft_limit": "0.00", "active_holds": 0})
    );

    let no_key = s.client.get(format!("{}/v1/users/7", s.base)).send().await.expect("send");
    problem(no_key, 401, "unauthorized").await;
    let wrong = s.admin.replace(&s.admin[s.admin.len() - 4..], "0000");
    problem(s.request(Method::GET, "/v1/users/7", &wrong).send().await.expect("send"), 401, "unauthorized").await;
    problem(s.request(Method::GET, "/v1/users/7", "Basic abc").send().await.expect("send"), 401, "unauthorized").await;
    let jobs_only = s.key(&[Scope::JobsRead], 100).await;
    problem(s.request(Method::GET, "/v1/users/7", &jobs_only).send().await.expect("send"), 403, "scope").await;
}

#[tokio::test]
async fn a_revoked_key_is_refused() {
    // Proves revocation: after the cache's few seconds, the key is refused everywhere.
    let s = start().await;
    let token = s.key(&[Scope::UsersRead], 100).await;
    let id = token.split('_').nth(1).expect("id").to_owned();
    let id = rei_core::guards::ApiKeyId::parse(&id).expect("id");
    assert!(s.engine.api_keys().revoke(&id, s.engine.clock().now()).await.expect("revoke"));
    // The key was never read, so it is not cached: refused at once.
    problem(s.request(Method::GET, "/v1/users/1", &token).send().await.expect("send"), 401, "unauthorized").await;
}

#[tokio::test]
async fn a_keys_rate_is_enforced_with_retry_after() {
    // Proves the per-key rate limit: a key of 3 a minute gets 3 answers, then 429 with Retry-After.
    let s = start().await;
    let token = s.key(&[Scope::UsersRead], 3).await;
    for _ in 0..3 {
        assert_eq!(s.request(Method::GET, "/v1/users/1", &token).send().await.expect("send").status(), 200);
    }
    let r = s.request(Method::GET, "/v1/users/1", &token).send().await.expect("send");
    let retry: u64 = r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok()).expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    problem(r, 429, "rate-limited").await;
    // Another key is not limited by this one.
    assert_eq!(s.get("/v1/users/1").await.status(), 200);
}

#[tokio::test]
async fn the_ledger_pages_newest_first_by_cursor() {
    // Proves GET /v1/users/{id}/ledger: the user's moves newest first, pages that join up, and bad queries.
    let s = start().await;
    for n in 0..5 {
        s.top_up(9, "10.00", &format!("p-{n}")).await;
    }
    s.top_up(10, "1.00", "other").await;
    let (status, first) = json(s.get("/v1/users/9/ledger?limit=2").await).await;
    assert_eq!(status, 200);
    assert_eq!(first["entries"].as_array().map(Vec::len), Some(2));
    assert_eq!(first["entries"][0]["payment_id"], "p-4");
    assert_eq!(first["entries"][0]["available_change"], "10.00");
    assert_eq!(first["entries"][0]["kind"], "top_up");
    let mut seen: Vec<Value> = first["entries"].as_array().cloned().unwrap_or_default();
    let mut cursor = first["next_cursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let (_, page) = json(s.get(&format!("/v1/users/9/ledger?limit=2&cursor={c}")).await).await;
        seen.extend(page["entries"].as_array().cloned().unwrap_or_default());
        cursor = page["next_cursor"].as_str().map(str::to_owned);
    }
    let payments: Vec<&str> = seen.iter().filter_map(|e| e["payment_id"].as_str()).collect();
    assert_eq!(payments, vec!["p-4", "p-3", "p-2", "p-1", "p-0"]);
    problem(s.get("/v1/users/9/ledger?limit=0").await, 400, "bad-request").await;
    problem(s.get("/v1/users/9/ledger?cursor=xyz").await, 400, "bad-request").await;
}

fn price_of(q: &Value) -> Money {
    Money::parse(q["price"].as_str().expect("price")).expect("money")
}

async fn quote(s: &crate::support::Server, user: i64) -> Value {
    let (status, q) = json(s.post("/v1/quotes", &json!({"user_id": user, "product": PRODUCT})).await).await;
    assert_eq!(status, 201, "{q}");
    q
}

#[tokio::test]
async fn quote_confirm_capture_moves_the_money_once() {
    // Proves the embedder's path: quote -> confirm (a hold) -> capture, each POST replayed by its key, a second
    // capture of the hold returning the first receipt, and the balance right at the end.
    let s = start().await;
    s.top_up(1, "100.00", "p1").await;
    let q = quote(&s, 1).await;
    let price = price_of(&q);
    assert!(price.is_positive());
    assert_eq!(q["breakdown"]["unit"], "image");
    let id = q["id"].as_str().expect("id").to_owned();

    let key = fresh_key();
    let confirm = json!({"user_id": 1});
    let (status, held) = json(s.post_keyed(&format!("/v1/quotes/{id}/confirm"), &confirm, &key).await).await;
    assert_eq!(status, 201, "{held}");
    assert_eq!(held["amount"], q["price"]);
    assert_eq!(held["job"], Value::Null);
    assert_eq!(Some(s.available(1).await), Money::parse("100.00").expect("money").checked_sub(price));
    // The same request under the same key: the same answer, marked replayed, nothing held twice.
    let again = s.post_keyed(&format!("/v1/quotes/{id}/confirm"), &confirm, &key).await;
    assert_eq!(again.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    assert_eq!(json(again).await.1, held);
    // The same key with another body: 409, nothing done.
    let other = s.post_keyed(&format!("/v1/quotes/{id}/confirm"), &json!({"user_id": 2}), &key).await;
    problem(other, 409, "idempotency-key-reused").await;

    let hold = held["hold_id"].as_str().expect("hold");
    let (status, captured) = json(s.post(&format!("/v1/holds/{hold}/capture"), &json!({"amount": "5.00"})).await).await;
    assert_eq!(status, 200, "{captured}");
    assert_eq!(
        (captured["kind"].as_str(), captured["amount"].as_str(), captured["replayed"].as_bool()),
        (Some("capture"), Some("5.00"), Some(false))
    );
    let (_, twice) = json(s.post(&format!("/v1/holds/{hold}/capture"), &json!({"amount": "5.00"})).await).await;
    assert_eq!(twice["replayed"], true);
    assert_eq!(twice["transaction_id"], captured["transaction_id"]);
    assert_eq!(s.available(1).await, Money::parse("95.00").expect("money"));
    problem(s.post(&format!("/v1/holds/{hold}/release"), &json!({})).await, 409, "hold-ended").await;
    assert!(s.engine.billing().verify().await.expect("verify").is_clean());
}

#[tokio::test]
async fn a_hold_released_gives_the_money_back_once() {
    // Proves POST /v1/holds/{id}/release and its errors: unknown hold 404, more than the hold 422.
    let s = start().await;
    s.top_up(3, "10.00", "p3").await;
    let q = quote(&s, 3).await;
    let (_, held) =
        json(s.post(&format!("/v1/quotes/{}/confirm", q["id"].as_str().expect("id")), &json!({"user_id": 3})).await)
            .await;
    let hold = held["hold_id"].as_str().expect("hold");
    problem(
        s.post(&format!("/v1/holds/{hold}/capture"), &json!({"amount": "1000.00"})).await,
        422,
        "capture-exceeds-hold",
    )
    .await;
    problem(s.post(&format!("/v1/holds/{hold}/capture"), &json!({"amount": "abc"})).await, 400, "bad-request").await;
    let (status, released) = json(s.post(&format!("/v1/holds/{hold}/release"), &json!({})).await).await;
    assert_eq!((status, released["kind"].as_str()), (200, Some("release")));
    let (_, again) = json(s.post(&format!("/v1/holds/{hold}/release"), &json!({})).await).await;
    assert_eq!(again["replayed"], true);
    assert_eq!(s.available(3).await, Money::parse("10.00").expect("money"));
    let unknown = "00000000-0000-0000-0000-0000000000ff";
    problem(s.post(&format!("/v1/holds/{unknown}/release"), &json!({})).await, 404, "hold-not-found").await;
    problem(s.post("/v1/holds/not-an-id/release", &json!({})).await, 404, "not-found").await;
}

#[tokio::test]
async fn a_confirm_with_a_request_queues_the_job_and_its_hold_is_the_workers() {
    // Proves confirm + enqueue: the job is queued with the quote's id and price, GET /v1/jobs/{id} shows it,
    // and its hold cannot be settled through the API (REI's workers settle it).
    let s = start().await;
    s.top_up(4, "50.00", "p4").await;
    let q = quote(&s, 4).await;
    let id = q["id"].as_str().expect("id");
    let body = json!({"user_id": 4, "request": {"capability": "text_to_image", "prompt": "a red fox", "aspect_ratio": "16:9"}, "priority": "high"});
    let (status, held) = json(s.post(&format!("/v1/quotes/{id}/confirm"), &body).await).await;
    assert_eq!(status, 201, "{held}");
    assert_eq!(held["job"]["id"], id);
    assert_eq!(held["job"]["state"], "queued");
    let (status, job) = json(s.get(&format!("/v1/jobs/{id}")).await).await;
    assert_eq!((status, &job["price"], job["user_id"].as_i64()), (200, &q["price"], Some(4)));
    assert_eq!(s.engine.job_queue().len_by_priority().await.expect("queue").waiting[1], 1, "queued at high");
    let hold = held["hold_id"].as_str().expect("hold");
    problem(
        s.post(&format!("/v1/holds/{hold}/capture"), &json!({"amount": q["price"]})).await,
        409,
        "hold-owned-by-job",
    )
    .await;
    problem(s.get("/v1/jobs/00000000-0000-0000-0000-000000000001").await, 404, "not-found").await;
}

#[tokio::test]
async fn confirms_are_refused_as_documented() {
    // Proves the confirm's errors: not enough money 402, another user's quote 403, unknown quote 404, a request
    // that cannot be generated 422, a bad priority 400; and nothing is held by any of them.
    let s = start().await;
    s.top_up(5, "1.00", "p5").await;
    let q = quote(&s, 5).await;
    let id = q["id"].as_str().expect("id");
    problem(s.post(&format!("/v1/quotes/{id}/confirm"), &json!({"user_id": 5})).await, 402, "insufficient-funds").await;
    problem(s.post(&format!("/v1/quotes/{id}/confirm"), &json!({"user_id": 6})).await, 403, "quote-owner").await;
    let unknown = "00000000-0000-0000-0000-0000000000aa";
    problem(s.post(&format!("/v1/quotes/{unknown}/confirm"), &json!({"user_id": 5})).await, 404, "quote-not-found")
        .await;
    s.top_up(5, "100.00", "p5b").await;
    let bad = json!({"user_id": 5, "request": {"capability": "image_edit", "prompt": "no image given"}});
    problem(s.post(&format!("/v1/quotes/{id}/confirm"), &bad).await, 422, "invalid-request").await;
    problem(
        s.post(&format!("/v1/quotes/{id}/confirm"), &json!({"user_id": 5, "priority": "urgent"})).await,
        400,
        "bad-request",
    )
    .await;
    assert_eq!(s.engine.billing().balance(rei_core::ids::UserId(5)).await.expect("b").held, Money::ZERO);
}

#[tokio::test]
async fn quotes_and_posts_are_refused_as_documented() {
    // Proves POST /v1/quotes' errors and the POST rules: unknown product 422, malformed JSON 400, no
    // Idempotency-Key 400, an unknown route 404, a body over the limit 413, headers over the limit 431.
    let s = start().await;
    problem(s.post("/v1/quotes", &json!({"user_id": 1, "product": "image.unknown"})).await, 422, "pricing").await;
    problem(s.post("/v1/quotes", &json!({"user_id": "one"})).await, 400, "invalid-body").await;
    problem(s.post("/v1/quotes", &json!({"user_id": 1, "product": PRODUCT, "tier": "gold"})).await, 400, "bad-request")
        .await;
    let no_key = s
        .request(Method::POST, "/v1/quotes", &s.admin)
        .json(&json!({"user_id": 1, "product": PRODUCT}))
        .send()
        .await
        .expect("send");
    problem(no_key, 400, "idempotency-key-required").await;
    problem(s.get("/v1/nothing").await, 404, "not-found").await;
    let huge = json!({"user_id": 1, "product": "x".repeat(70 * 1024)});
    problem(s.post("/v1/quotes", &huge).await, 413, "body-too-large").await;
    let r = s
        .request(Method::GET, "/v1/users/1", &s.admin)
        .header("x-filler", "y".repeat(17 * 1024))
        .send()
        .await
        .expect("send");
    problem(r, 431, "headers-too-large").await;
}

#[tokio::test]
async fn concurrent_posts_with_one_key_run_once() {
    // Proves the replay under concurrency: 20 identical confirms with one key hold once; every answer is
    // the first one's or a 409 "in progress".
    let s = std::sync::Arc::new(start().await);
    s.top_up(8, "100.00", "p8").await;
    let q = quote(&s, 8).await;
    let path = format!("/v1/quotes/{}/confirm", q["id"].as_str().expect("id"));
    let key = fresh_key();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (s, path, key) = (s.clone(), path.clone(), key.clone());
            tokio::spawn(async move { json(s.post_keyed(&path, &json!({"user_id": 8}), &key).await).await })
        })
        .collect();
    let mut created = Vec::new();
    for t in tasks {
        let (status, body) = t.await.expect("join");
        match status {
            201 => created.push(body),
            409 => assert_eq!(body["code"], "idempotency-key-in-progress"),
            other => panic!("{other}: {body}"),
        }
    }
    assert!(!created.is_empty());
    assert!(created.windows(2).all(|w| w[0] == w[1]), "every 201 is the same answer");
    assert_eq!(Some(s.available(8).await), Money::parse("100.00").expect("money").checked_sub(price_of(&q)));
}

#[tokio::test]
async fn a_topup_without_a_gateway_says_what_to_configure() {
    // Proves POST /v1/topups on a server with no payment credentials: a clear 503.
    let s = start().await;
    let body = json!({"user_id": 1, "amount": "100.00", "topup_id": "t1", "return_url": "https://t.me/bot"});
    let p = problem(s.post("/v1/topups", &body).await, 503, "payments-not-configured").await;
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("YOOKASSA_SHOP_ID")));
}

#[tokio::test]
async fn an_expired_quote_and_too_many_running_jobs_are_refused() {
    // Proves the confirm's 410 (the quote expired: ask again) and 429 (the user has as many jobs running as
    // allowed, with Retry-After), on a manual clock; neither holds anything.
    use std::sync::Arc;
    use std::time::Duration;
    let clock =
        Arc::new(rei_core::testing::clock::ManualClock::new(rei_core::time::Timestamp::from_millis(1_800_000_000_000)));
    let s = crate::support::start_on(
        rei::Engine::builder().clock(clock.clone()),
        Box::new(|_| {}),
        rei_http::HttpConfig::default(),
    )
    .await;
    s.top_up(11, "100.00", "p11").await;
    let old = quote(&s, 11).await;
    clock.advance(Duration::from_secs(24 * 60 * 60));
    let path = format!("/v1/quotes/{}/confirm", old["id"].as_str().expect("id"));
    problem(s.post(&path, &json!({"user_id": 11})).await, 410, "quote-expired").await;
    for _ in 0..2 {
        let q = quote(&s, 11).await;
        let (status, _) = json(
            s.post(&format!("/v1/quotes/{}/confirm", q["id"].as_str().expect("id")), &json!({"user_id": 11})).await,
        )
        .await;
        assert_eq!(status, 201);
    }
    let third = quote(&s, 11).await;
    let r = s.post(&format!("/v1/quotes/{}/confirm", third["id"].as_str().expect("id")), &json!({"user_id": 11})).await;
    assert!(r.headers().get("retry-after").is_some());
    problem(r, 429, "too-many-running").await;
    assert_eq!(s.engine.billing().balance(rei_core::ids::UserId(11)).await.expect("b").active_holds, 2);
}

#[tokio::test]
async fn every_route_needs_a_key_and_its_scope() {
    // Proves 401 without a key and 403 without the scope on every /v1 route.
    let s = start().await;
    let none = s.key(&[Scope::LedgerRead], 1000).await;
    let hold = "00000000-0000-0000-0000-000000000001";
    let routes: [(Method, String, Value); 9] = [
        (Method::GET, "/v1/users/1".into(), Value::Null),
        (Method::GET, "/v1/jobs/00000000-0000-0000-0000-000000000001".into(), Value::Null),
        (
            Method::POST,
            "/v1/topups".into(),
            json!({"user_id": 1, "amount": "1.00", "topup_id": "t", "return_url": "https://x"}),
        ),
        (Method::POST, "/v1/quotes".into(), json!({"user_id": 1, "product": PRODUCT})),
        (Method::POST, format!("/v1/quotes/{hold}/confirm"), json!({"user_id": 1})),
        (Method::POST, format!("/v1/holds/{hold}/capture"), json!({"amount": "1.00"})),
        (Method::POST, format!("/v1/holds/{hold}/release"), json!({})),
        (Method::POST, "/v1/refunds".into(), json!({"user_id": 1, "payment_id": "p", "amount": "1.00"})),
        (Method::GET, "/v1/users/1/ledger".into(), Value::Null),
    ];
    for (method, path, body) in routes {
        let bare = s.client.request(method.clone(), format!("{}{path}", s.base)).header("Idempotency-Key", fresh_key());
        problem(bare.json(&body).send().await.expect("send"), 401, "unauthorized").await;
        if path.ends_with("/ledger") {
            continue;
        }
        let scoped = s.request(method, &path, &none).header("Idempotency-Key", fresh_key()).json(&body);
        problem(scoped.send().await.expect("send"), 403, "scope").await;
    }
}

#[tokio::test]
async fn maintenance_forgets_replays_after_a_day() {
    // Proves the replay retention: a POST's stored response replays within the day and is purged by
    // maintenance after it, when the same key runs afresh; old bot updates are forgotten too.
    use std::sync::Arc;
    use std::time::Duration;
    let clock =
        Arc::new(rei_core::testing::clock::ManualClock::new(rei_core::time::Timestamp::from_millis(1_800_000_000_000)));
    let s = crate::support::start_on(
        rei::Engine::builder().clock(clock.clone()),
        Box::new(|_| {}),
        rei_http::HttpConfig::default(),
    )
    .await;
    let body = json!({"user_id": 12, "product": PRODUCT});
    let (_, first) = json(s.post_keyed("/v1/quotes", &body, "day-key").await).await;
    let replayed = s.post_keyed("/v1/quotes", &body, "day-key").await;
    assert!(replayed.headers().contains_key("idempotent-replayed"));
    assert!(s.engine.updates().claim(1, s.engine.clock().now()).await.expect("claim"));
    clock.advance(rei::REPLAY_RETENTION + Duration::from_secs(60));
    let report = s.engine.run_maintenance().await.expect("maintenance");
    assert_eq!(report.replays_purged, 1);
    let (status, fresh) = json(s.post_keyed("/v1/quotes", &body, "day-key").await).await;
    assert_eq!(status, 201);
    assert_ne!(fresh["id"], first["id"], "purged: the key runs afresh");
    clock.advance(rei::UPDATE_RETENTION);
    assert_eq!(s.engine.run_maintenance().await.expect("maintenance").updates_purged, 1);
    assert!(s.engine.updates().claim(1, s.engine.clock().now()).await.expect("claim"), "forgotten: new again");
}
