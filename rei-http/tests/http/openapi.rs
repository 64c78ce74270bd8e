//! The OpenAPI document against the routes and the responses: every documented route answers (it is routed),
//! the routes are the ones REI serves, and every response of a scenario that reaches every route and its
//! documented errors is documented under its status and matches its schema.

use std::sync::Arc;
use std::time::Duration;

use rei_adapters::fakes::yookassa::FakeYooKassa;
use rei_adapters::yookassa::{YooKassa, YooKassaConfig};
use rei_core::access::Scope;
use rei_core::topups::{SourceAllowlist, TopUpsConfig};
use rei_http::HttpConfig;
use rei_http::webhooks::WebhookSources;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Server, fresh_key, start_with};

fn doc() -> Value {
    serde_json::to_value(rei_http::openapi()).expect("document")
}

#[test]
fn the_document_is_openapi_3_1_with_every_route() {
    // Proves the document's frame and that it lists exactly the routes REI serves.
    let doc = doc();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{}", doc["openapi"]);
    let mut routes: Vec<String> = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            routes.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    routes.sort();
    let expected = [
        "GET /health/live",
        "GET /health/ready",
        "GET /metrics",
        "GET /v1/jobs/{id}",
        "GET /v1/users/{id}",
        "GET /v1/users/{id}/ledger",
        "POST /v1/holds/{id}/capture",
        "POST /v1/holds/{id}/release",
        "POST /v1/quotes",
        "POST /v1/quotes/{id}/confirm",
        "POST /v1/refunds",
        "POST /v1/topups",
        "POST /webhooks/telegram",
        "POST /webhooks/yookassa",
    ];
    assert_eq!(routes, expected);
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
}

/// Resolves `{"$ref": "#/components/schemas/X"}`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap_or_default();
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "null" => v.is_null(),
        _ => false,
    }
}

/// Checks `v` against the subset of JSON Schema the document uses; returns what does not match.
fn check(doc: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let fits = options.iter().filter(|o| {
                let mut e = Vec::new();
                check(doc, o, v, at, &mut e);
                e.is_empty()
            });
            if fits.count() == 0 {
                errors.push(format!("{at}: {v} fits none of {key}"));
            }
            return;
        }
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            check(doc, s, v, at, errors);
        }
    }
    match schema.get("type") {
        Some(Value::String(t)) if !type_ok(t, v) => errors.push(format!("{at}: {v} is not {t}")),
        Some(Value::Array(ts)) if !ts.iter().any(|t| t.as_str().is_some_and(|t| type_ok(t, v))) => {
            errors.push(format!("{at}: {v} is none of {ts:?}"));
        }
        _ => {}
    }
    if let (Some(props), Some(obj)) = (schema.get("properties").and_then(Value::as_object), v.as_object()) {
        for req in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let name = req.as_str().unwrap_or_default();
            if !obj.contains_key(name) {
                errors.push(format!("{at}: the required {name} is missing"));
            }
        }
        for (name, value) in obj {
            match props.get(name) {
                Some(s) => check(doc, s, value, &format!("{at}.{name}"), errors),
                None => errors.push(format!("{at}: {name} is not in the schema")),
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), v.as_array()) {
        for (i, item) in array.iter().enumerate() {
            check(doc, items, item, &format!("{at}[{i}]"), errors);
        }
    }
}

struct Recorded {
    method: &'static str,
    template: &'static str,
    status: u16,
    media: String,
    body: String,
}

struct Rig {
    server: Server,
    fake: FakeYooKassa,
    seen: Vec<Recorded>,
}

impl Rig {
    async fn call(
        &mut self,
        method: &'static str,
        template: &'static str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Value {
        let m = if method == "GET" { Method::GET } else { Method::POST };
        let mut r = self.server.client.request(m, format!("{}{path}", self.server.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if method == "POST" {
            r = r.header("Idempotency-Key", fresh_key());
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let response = r.send().await.expect("send");
        let status = response.status().as_u16();
        let media = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let body = response.text().await.expect("body");
        self.seen.push(Recorded { method, template, status, media, body: body.clone() });
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }
}

#[tokio::test]
async fn every_response_is_documented_and_matches_its_schema() {
    // Proves the document describes what the server sends: each route's successes and documented errors.
    let fake = FakeYooKassa::start("100500", "test_secret").await.expect("fake");
    let config = YooKassaConfig {
        base_url: fake.base_url(),
        retry_pause: Duration::from_millis(10),
        ..YooKassaConfig::new("100500", "test_secret")
    };
    let server = start_with(
        Box::new(move |state| {
            let gateway = Arc::new(YooKassa::new(config).expect("adapter"));
            state.topups = Some(Arc::new(state.engine.top_ups(gateway, TopUpsConfig::default())));
            state.webhooks = WebhookSources {
                allowlist: SourceAllowlist::parse(&["127.0.0.1"]).expect("list"),
                ..WebhookSources::default()
            };
        }),
        HttpConfig::default(),
    )
    .await;
    let admin = server.admin.clone();
    let narrow = server.key(&[Scope::JobsRead], 1000).await;
    server.top_up(1, "100.00", "p-1").await;
    let mut rig = Rig { server, fake, seen: Vec::new() };
    let a = Some(admin.as_str());

    rig.call("GET", "/v1/users/{id}", "/v1/users/1", None, a).await;
    rig.call("GET", "/v1/users/{id}", "/v1/users/1", None, None).await;
    rig.call("GET", "/v1/users/{id}", "/v1/users/1", None, Some(&narrow)).await;
    rig.call("GET", "/v1/users/{id}/ledger", "/v1/users/1/ledger?limit=1", None, a).await;
    rig.call("GET", "/v1/users/{id}/ledger", "/v1/users/1/ledger?limit=0", None, a).await;
    let topup = json!({"user_id": 1, "amount": "10.00", "topup_id": "t-1", "return_url": "https://t.me/x"});
    let payment = rig.call("POST", "/v1/topups", "/v1/topups", Some(topup), a).await;
    rig.call("POST", "/v1/topups", "/v1/topups", Some(json!({"user_id": 1})), a).await;
    let q = rig
        .call("POST", "/v1/quotes", "/v1/quotes", Some(json!({"user_id": 1, "product": "image.nano-banana"})), a)
        .await;
    rig.call("POST", "/v1/quotes", "/v1/quotes", Some(json!({"user_id": 1, "product": "image.none"})), a).await;
    let q2 = rig
        .call("POST", "/v1/quotes", "/v1/quotes", Some(json!({"user_id": 1, "product": "image.nano-banana"})), a)
        .await;
    let qid = q["id"].as_str().expect("quote").to_owned();
    let held = rig
        .call("POST", "/v1/quotes/{id}/confirm", &format!("/v1/quotes/{qid}/confirm"), Some(json!({"user_id": 1})), a)
        .await;
    let q2id = q2["id"].as_str().expect("quote").to_owned();
    let request = json!({"user_id": 1, "request": {"capability": "text_to_image", "prompt": "a fox"}});
    let job =
        rig.call("POST", "/v1/quotes/{id}/confirm", &format!("/v1/quotes/{q2id}/confirm"), Some(request), a).await;
    rig.call("POST", "/v1/quotes/{id}/confirm", &format!("/v1/quotes/{qid}/confirm"), Some(json!({"user_id": 2})), a)
        .await;
    rig.call(
        "POST",
        "/v1/quotes/{id}/confirm",
        "/v1/quotes/00000000-0000-0000-0000-000000000009/confirm",
        Some(json!({"user_id": 1})),
        a,
    )
    .await;
    let jid = job["job"]["id"].as_str().expect("job").to_owned();
    rig.call("GET", "/v1/jobs/{id}", &format!("/v1/jobs/{jid}"), None, Some(&narrow)).await;
    rig.call("GET", "/v1/jobs/{id}", "/v1/jobs/00000000-0000-0000-0000-000000000009", None, a).await;
    let hold = held["hold_id"].as_str().expect("hold").to_owned();
    rig.call(
        "POST",
        "/v1/holds/{id}/capture",
        &format!("/v1/holds/{hold}/capture"),
        Some(json!({"amount": "999.00"})),
        a,
    )
    .await;
    rig.call(
        "POST",
        "/v1/holds/{id}/capture",
        &format!("/v1/holds/{hold}/capture"),
        Some(json!({"amount": "1.00"})),
        a,
    )
    .await;
    rig.call("POST", "/v1/holds/{id}/release", &format!("/v1/holds/{hold}/release"), None, a).await;
    rig.call("POST", "/v1/holds/{id}/release", "/v1/holds/00000000-0000-0000-0000-000000000009/release", None, a).await;
    let pid = payment["payment_id"].as_str().expect("payment").to_owned();
    rig.fake.set_status(&pid, "succeeded");
    let notice = json!({"type": "notification", "event": "payment.succeeded", "object": {"id": pid}});
    rig.call("POST", "/webhooks/yookassa", "/webhooks/yookassa", Some(notice), None).await;
    rig.call("POST", "/webhooks/yookassa", "/webhooks/yookassa", Some(json!({"type": "x"})), None).await;
    let refund = json!({"user_id": 1, "payment_id": pid, "amount": "1.00", "refund_id": "r-1"});
    rig.call("POST", "/v1/refunds", "/v1/refunds", Some(refund), a).await;
    let too_much = json!({"user_id": 1, "payment_id": pid, "amount": "50.00", "refund_id": "r-2"});
    rig.call("POST", "/v1/refunds", "/v1/refunds", Some(too_much), a).await;
    rig.call("POST", "/webhooks/telegram", "/webhooks/telegram", Some(json!({"update_id": 1})), None).await;
    rig.call("GET", "/health/live", "/health/live", None, None).await;
    rig.call("GET", "/health/ready", "/health/ready", None, None).await;
    rig.call("GET", "/metrics", "/metrics", None, None).await;

    let doc = doc();
    let mut errors = Vec::new();
    let mut statuses = std::collections::BTreeSet::new();
    for r in &rig.seen {
        let operation = &doc["paths"][r.template][r.method.to_lowercase()];
        let documented = &operation["responses"][r.status.to_string()];
        if documented.is_null() {
            errors.push(format!(
                "{} {} answered {}, which is not documented: {}",
                r.method, r.template, r.status, r.body
            ));
            continue;
        }
        statuses.insert((r.template, r.status));
        let Some(content) = documented.get("content").and_then(Value::as_object) else { continue };
        let media = r.media.split(';').next().unwrap_or_default().trim();
        let Some(entry) =
            content.get(media).or_else(|| content.iter().find(|(k, _)| k.starts_with(media)).map(|(_, v)| v))
        else {
            errors.push(format!("{} {} {}: media {media} is not documented", r.method, r.template, r.status));
            continue;
        };
        if media.ends_with("json") {
            let value: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            check(&doc, &entry["schema"], &value, &format!("{} {} {}", r.method, r.template, r.status), &mut errors);
        }
    }
    assert!(errors.is_empty(), "{errors:#?}");
    // The scenario reached successes and errors of every route.
    for (template, status) in [
        ("/v1/users/{id}", 200),
        ("/v1/users/{id}", 401),
        ("/v1/users/{id}", 403),
        ("/v1/topups", 201),
        ("/v1/quotes", 422),
        ("/v1/quotes/{id}/confirm", 201),
        ("/v1/quotes/{id}/confirm", 404),
        ("/v1/holds/{id}/capture", 422),
        ("/v1/holds/{id}/capture", 200),
        ("/v1/holds/{id}/release", 409),
        ("/webhooks/yookassa", 200),
        ("/webhooks/yookassa", 400),
    ] {
        assert!(statuses.contains(&(template, status)), "{template} {status} not reached");
    }
}

#[test]
fn the_schema_check_catches_a_wrong_response() {
    // Proves the checker above can fail: a wrong type, a missing field and an unknown field are each caught.
    let doc = doc();
    let schema = json!({"$ref": "#/components/schemas/UserView"});
    let good = json!({"user_id": 1, "available": "1.00", "held": "0.00", "overdraft_limit": "0.00", "active_holds": 0});
    let mut errors = Vec::new();
    check(&doc, &schema, &good, "good", &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    for bad in [
        json!({"user_id": "1", "available": "1.00", "held": "0.00", "overdraft_limit": "0.00", "active_holds": 0}),
        json!({"user_id": 1, "held": "0.00", "overdraft_limit": "0.00", "active_holds": 0}),
        json!({"user_id": 1, "available": "1.00", "held": "0.00", "overdraft_limit": "0.00", "active_holds": 0, "x": 1}),
    ] {
        let mut errors = Vec::new();
        check(&doc, &schema, &bad, "bad", &mut errors);
        assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
    }
}
