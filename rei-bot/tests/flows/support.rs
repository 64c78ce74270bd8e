//! The test rig: a sandbox stack at a fixed noon (prices are off-peak), fast send pacing, and snapshots.

use std::sync::Arc;
use std::time::Duration;

use rei_adapters::fakes::telegram::updates::TestUser;
use rei_adapters::telegram::Pacing;
use rei_bot::sandbox::{Driver, Stack, StackOptions};
use rei_core::guards::RateLimitPolicy;
use rei_core::ids::UserId;
use rei_core::money::Money;
use rei_core::testing::clock::ManualClock;
use rei_core::time::Timestamp;
use serde_json::Value;

/// Tuesday 2026-12-01 12:00 in Moscow: off-peak, so quotes are cost plus margin.
pub(crate) const NOON: i64 = 1_796_115_600_000;

pub(crate) struct Rig {
    pub(crate) stack: Stack,
    pub(crate) clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

impl Rig {
    pub(crate) async fn start() -> Rig {
        Rig::start_with(None).await
    }

    /// A rig whose engine keeps `billing` (caps, jobs at once).
    pub(crate) async fn start_with(billing: Option<rei_core::billing::BillingConfig>) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(NOON)));
        let fast = RateLimitPolicy::new(1_000, Duration::from_secs(1), 1_000).unwrap();
        let options = StackOptions {
            pacing: Pacing { per_chat: fast, global: fast },
            poll_interval: Duration::from_millis(20),
            clock: Some(clock.clone()),
            user_rate: Some(RateLimitPolicy::new(60, Duration::from_secs(60), 30).unwrap()),
            billing,
            ..StackOptions::new(dir.path())
        };
        Rig { stack: Stack::start(options).await.unwrap(), clock, _dir: dir }
    }

    pub(crate) fn driver(&self) -> Driver<'_> {
        Driver { stack: &self.stack }
    }

    pub(crate) async fn text(&self, user: &TestUser, text: &str) {
        self.driver().text(user, text).await.unwrap();
    }

    pub(crate) async fn press(&self, user: &TestUser, data: &str) {
        let data = data.to_owned();
        self.driver()
            .press(user, move |d| d == data || (data.ends_with('*') && d.starts_with(&data[..data.len() - 1])))
            .await
            .unwrap();
    }

    /// Presses a button, and returns its message and data to press it again later.
    pub(crate) async fn press_keep(&self, user: &TestUser, prefix: &str) -> (i64, String) {
        let found = self.driver().button(user, |d| d.starts_with(prefix)).unwrap();
        self.driver().press_data(user, found.0, &found.1).await.unwrap();
        found
    }

    pub(crate) async fn balance(&self, user: &TestUser) -> (Money, Money) {
        let b = self.stack.engine.billing().balance(UserId(user.id)).await.unwrap();
        (b.available, b.held)
    }

    /// Waits until the user's chat has `n` messages.
    pub(crate) async fn wait_messages(&self, user: &TestUser, n: usize) {
        for _ in 0..500 {
            if self.stack.telegram.sent_to(user.id).len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{} messages expected, got:\n{}", n, self.transcript(user));
    }

    /// Waits until every job ended.
    pub(crate) async fn settle(&self) {
        for _ in 0..1_000 {
            let c = self.driver().counts().await.unwrap();
            if c.queued + c.running + c.unknown == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("jobs did not end");
    }

    /// What the user's chat shows, one block per message: the method, the text now, and the buttons; ids masked.
    pub(crate) fn transcript(&self, user: &TestUser) -> String {
        let mut out = String::new();
        for m in self.stack.telegram.sent_to(user.id) {
            out.push_str(&format!("{}: {}\n", m.method, m.current_text.clone().unwrap_or_default()));
            if let Some(rows) = m.reply_markup.as_ref().and_then(|k| k.get("inline_keyboard")).and_then(Value::as_array)
            {
                for row in rows {
                    let cells: Vec<String> = row
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|b| {
                            let text = b.get("text").and_then(Value::as_str).unwrap_or("");
                            let to =
                                b.get("callback_data").or_else(|| b.get("url")).and_then(Value::as_str).unwrap_or("");
                            format!("[{text} → {to}]")
                        })
                        .collect();
                    out.push_str(&format!("  {}\n", cells.join(" ")));
                }
            }
        }
        mask(&out)
    }

    pub(crate) async fn stop(self) {
        let report = self.stack.engine.billing().verify().await.unwrap();
        assert!(report.is_clean(), "{report:?}");
        self.stack.stop().await;
    }
}

/// Ids that differ between runs become placeholders: 32-hex ids, UUIDs, referral codes, payment links.
pub(crate) fn mask(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let run = chars[i..].iter().take_while(|c| c.is_ascii_hexdigit() || **c == '-').count();
        let hex = chars[i..i + run].iter().filter(|c| c.is_ascii_hexdigit()).count();
        if run >= 32 && hex >= 32 {
            out.push_str("<id>");
            i += run;
            continue;
        }
        if chars[i..].starts_with(&['r', 'e', 'f', '_']) {
            out.push_str("ref_<code>");
            i += 4;
            while i < chars.len() && chars[i].is_ascii_alphanumeric() {
                i += 1;
            }
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Compares `actual` with `tests/snapshots/<name>.txt`; `REI_BLESS=1` writes it instead.
pub(crate) fn snapshot(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(format!("{name}.txt"));
    if std::env::var_os("REI_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("no snapshot {}: run with REI_BLESS=1 to write it\n{actual}", path.display()));
    assert_eq!(actual, expected, "snapshot {name} differs (REI_BLESS=1 rewrites it)");
}

pub(crate) fn ru(id: i64) -> TestUser {
    TestUser::new(id).first_name("Анна").language_code(Some("ru"))
}

pub(crate) fn en(id: i64) -> TestUser {
    TestUser::new(id).first_name("Ann").language_code(Some("en"))
}

pub(crate) fn admin() -> TestUser {
    TestUser::new(rei_bot::sandbox::ADMIN).first_name("Admin").language_code(Some("en"))
}
