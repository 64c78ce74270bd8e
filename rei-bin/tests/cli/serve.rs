//! `rei serve` as a process: it starts on SQLite alone, answers health, the OpenAPI document and a key made with
//! `rei api-key create`, says what to configure for payments, and stops on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::rei;

/// One HTTP/1.1 request over a fresh connection; returns the status and the body.
fn http(addr: &str, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream.write_all(request.as_bytes()).expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    let status = raw.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn get(addr: &str, path: &str, key: Option<&str>) -> (u16, String) {
    let auth = key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    http(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"))
}

fn post(addr: &str, path: &str, key: &str, body: &str) -> (u16, String) {
    http(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nIdempotency-Key: cli-1\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn rei_serve_starts_on_sqlite_alone_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("serve.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_rei"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &url])
        .env_remove("YOOKASSA_SHOP_ID")
        .env_remove("BOT_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rei serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("read");
    assert!(first.contains("payments: not configured"), "{first}");
    let addr = first.split("http://").nth(1).and_then(|r| r.split(' ').next()).expect("address").to_owned();

    let (status, body) = get(&addr, "/health/ready", None);
    assert_eq!(status, 200, "{body}");
    let (status, doc) = get(&addr, "/openapi.json", None);
    assert!(status == 200 && doc.contains("\"openapi\": \"3.1"), "{status}");

    let (ok, out, err) =
        rei(&["api-key", "create", "--database-url", &url, "--name", "cli", "--scopes", "users:read,topups:write"]);
    assert!(ok, "{err}");
    let key = out.lines().find_map(|l| l.strip_prefix("key     ")).expect("the key").trim().to_owned();
    let (status, user) = get(&addr, "/v1/users/5", Some(&key));
    assert!(status == 200 && user.contains("\"available\":\"0.00\""), "{status} {user}");
    let (status, _) = get(&addr, "/v1/users/5", Some("rei_0000000000000000_00"));
    assert_eq!(status, 401);
    let (status, problem) =
        post(&addr, "/v1/topups", &key, r#"{"user_id":5,"amount":"10.00","topup_id":"t","return_url":"https://x"}"#);
    assert!(status == 503 && problem.contains("YOOKASSA_SHOP_ID"), "{status} {problem}");
    let (ok, listed, _) = rei(&["api-key", "list", "--database-url", &url]);
    assert!(ok && listed.contains("cli") && !listed.contains(&key), "the list never shows a key: {listed}");

    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill -TERM");
    assert!(term.success());
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("rei serve: stopped")), "{rest:?}");
}

#[test]
fn rei_serve_names_what_is_wrong_in_its_configuration() {
    // Proves configuration errors name the variable: one YooKassa credential without the other, a bot token
    // without the webhook secret, a bad allowlist.
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("conf.db").display());
    let base = ["serve", "--listen", "127.0.0.1:0", "--database-url", url.as_str()];
    for (extra, needle) in [
        (vec!["--yookassa-shop-id", "1"], "YOOKASSA_SHOP_ID and YOOKASSA_SECRET_KEY go together"),
        (vec!["--bot-token", "1:x"], "TELEGRAM_WEBHOOK_SECRET"),
        (vec!["--webhook-allowlist", "10.0.0.0/40"], "REI_WEBHOOK_ALLOWLIST"),
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra).collect();
        let (ok, _, err) = rei(&args);
        assert!(!ok && err.contains(needle), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rei_all_runs_every_role_in_one_process_and_the_bot_answers_by_polling() {
    // Proves `rei all`: one process serves HTTP, runs a worker and gc, and (no webhook secret) polls Telegram:
    // a /start pushed to the fake Bot API is answered; SIGTERM stops every role and the process exits 0.
    let telegram = rei_adapters::fakes::telegram::FakeTelegram::start("42:all-token").await.expect("fake telegram");
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("all.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_rei"))
        .args(["all", "--listen", "127.0.0.1:0", "--database-url", &url])
        .env("BOT_TOKEN", "42:all-token")
        .env("TELEGRAM_API_URL", telegram.base_url())
        .env("ADMIN_IDS", "1")
        .env("NANO_BANANA_API_KEY", "k")
        .env("GEMINI_BASE_URL", "http://127.0.0.1:9")
        .env("REI_ASSETS_DIR", dir.path().join("assets"))
        .env_remove("YOOKASSA_SHOP_ID")
        .env_remove("TELEGRAM_WEBHOOK_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rei all");
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let addr = loop {
        let line = lines_rx.recv_timeout(Duration::from_secs(60)).expect("rei all printed its address");
        seen.push(line.clone());
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split(' ').next().expect("address").to_owned();
        }
    };
    let (status, _) = get(&addr, "/health/live", None);
    assert_eq!(status, 200);
    let user = rei_adapters::fakes::telegram::updates::TestUser::new(77).first_name("Ann").language_code(Some("en"));
    telegram.push_update(rei_adapters::fakes::telegram::updates::text_message_from(1, &user, "/start"));
    let mut answered = false;
    for _ in 0..300 {
        if telegram.sent_to(77).iter().any(|m| m.text.as_deref().is_some_and(|t| t.starts_with("Hi, Ann"))) {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "{:?}\n{seen:?}", telegram.sent_to(77));
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill -TERM");
    assert!(term.success());
    let status = tokio::task::spawn_blocking(move || child.wait()).await.expect("join").expect("wait");
    assert!(status.success(), "{status:?}");
    telegram.stop().await;
}
