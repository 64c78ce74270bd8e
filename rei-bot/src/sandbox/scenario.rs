//! The sandbox's scenario, played through the real webhook over HTTP as Telegram and YooKassa would: users join
//! (the first by itself with the trial, the others by a referral link), top up by card and by Stars, order
//! images (some editing a photo) and videos; the main image provider fails for a while and the reserve takes over;
//! a content block fails a job and returns its money; an admin refunds a delivered job, adjusts a balance and sends
//! a broadcast. Then every job's end is awaited and [`Summary`] tells what happened, down to the ledger's verify.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use rei_adapters::fakes::gemini::GeminiOutcome;
use rei_adapters::fakes::telegram::updates::{self, TestUser};
use rei_core::ids::UserId;
use rei_core::jobs::JobState;
use rei_core::ledger::VerifyReport;
use rei_core::money::Money;
use rei_core::reports::{JobCounts, MoneyFlow, ProviderUsage};
use serde_json::Value;

use super::{ADMIN, Stack, StackError};

/// How much to play.
#[derive(Clone, Copy, Debug)]
pub struct ScenarioOptions {
    /// Users, at least 2 (one pays by card, one by Stars).
    pub users: u32,
    /// Generations ordered, at least 4 (the first video, the photo edit, the blocked one, the failover).
    pub jobs: u32,
    /// The longest wait for every job to end.
    pub deadline: Duration,
}

impl Default for ScenarioOptions {
    fn default() -> ScenarioOptions {
        ScenarioOptions { users: 6, jobs: 12, deadline: Duration::from_secs(120) }
    }
}

/// What the scenario found.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Users who joined.
    pub users: u64,
    /// Each user's balance at the end: id, available, held.
    pub balances: Vec<(i64, Money, Money)>,
    /// Jobs by state.
    pub jobs: JobCounts,
    /// Per provider.
    pub providers: Vec<ProviderUsage>,
    /// Money moved.
    pub money: MoneyFlow,
    /// Broadcast messages delivered.
    pub broadcast_sent: u64,
    /// The ledger's verification.
    pub verify: VerifyReport,
    /// How long it took.
    pub elapsed: Duration,
}

impl Summary {
    /// `true` when the ledger verifies and every job ended.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.verify.is_clean() && self.jobs.queued == 0 && self.jobs.running == 0 && self.jobs.unknown == 0
    }

    /// The summary as text with bar charts, for a terminal.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Users: {}   broadcast delivered to {}   in {:.1?}",
            self.users, self.broadcast_sent, self.elapsed
        );
        let _ = writeln!(out, "\nJobs by status");
        let j = &self.jobs;
        let rows = [
            ("succeeded", j.succeeded),
            ("failed", j.failed),
            ("cancelled", j.cancelled),
            ("queued", j.queued),
            ("running", j.running),
            ("unknown", j.unknown),
        ];
        let max = rows.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
        for (name, n) in rows {
            let _ = writeln!(out, "  {name:<10} {:<30} {n}", bar(n, max, 30));
        }
        let _ = writeln!(out, "\nProvider use (attempts: ok / failed)");
        let max = self.providers.iter().map(|p| p.attempts).max().unwrap_or(0).max(1);
        for p in &self.providers {
            let _ = writeln!(
                out,
                "  {:<16} {:<30} {} / {}   cost {} ₽",
                p.provider.to_string(),
                bar(p.attempts, max, 30),
                p.successes,
                p.failures,
                p.cost
            );
        }
        let m = &self.money;
        let _ = writeln!(out, "\nMoney");
        let _ = writeln!(out, "  top-ups        {:>10} ₽  ({} payments)", m.top_ups, m.top_up_count);
        let _ = writeln!(out, "  grants         {:>10} ₽", m.grants);
        let _ = writeln!(out, "  revenue        {:>10} ₽", m.revenue);
        let _ = writeln!(out, "  refunds        {:>10} ₽", m.refunds);
        let _ = writeln!(out, "  provider cost  {:>10} ₽", m.provider_cost);
        let _ = writeln!(out, "  margin         {:>10} ₽", m.margin());
        let _ = writeln!(out, "\nBalances");
        for (user, available, held) in &self.balances {
            let _ = writeln!(out, "  {user:<8} {available:>10} ₽   held {held} ₽");
        }
        let v = &self.verify;
        let _ = writeln!(
            out,
            "\nLedger verify: {} ({} transactions, {} drifts, {} unbalanced, {} below floor, accounts sum to {})",
            if v.is_clean() { "CLEAN" } else { "FAILED" },
            v.transactions,
            v.drifts.len(),
            v.unbalanced.len(),
            v.below_floor.len(),
            v.total
        );
        out
    }
}

fn bar(n: u64, max: u64, width: u64) -> String {
    let cells = if n == 0 { 0 } else { (n * width).div_ceil(max) };
    "█".repeat(usize::try_from(cells).unwrap_or(0))
}

/// The callback buttons of a message's keyboard: (label, data).
fn buttons(markup: Option<&Value>) -> Vec<(String, String)> {
    let Some(rows) = markup.and_then(|m| m.get("inline_keyboard")).and_then(Value::as_array) else { return vec![] };
    rows.iter()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|b| {
            let text = b.get("text")?.as_str()?.to_owned();
            let data = b.get("callback_data").or_else(|| b.get("url"))?.as_str()?.to_owned();
            Some((text, data))
        })
        .collect()
}

/// Plays the scenario, calling `progress` with a line at each step.
///
/// # Errors
/// [`StackError`] when the stack did not answer as it must (a refused webhook, a button that never came).
pub async fn play(
    stack: &Stack,
    options: ScenarioOptions,
    mut progress: impl FnMut(&str),
) -> Result<Summary, StackError> {
    let started = Instant::now();
    let users = options.users.max(2);
    let jobs = options.jobs.max(4);
    let people: Vec<TestUser> = (0..users)
        .map(|n| {
            let lang = if n % 2 == 0 { "ru" } else { "en" };
            TestUser::new(10_001 + i64::from(n)).first_name(&format!("User{}", n + 1)).language_code(Some(lang))
        })
        .collect();
    let admin = TestUser::new(ADMIN).first_name("Admin").language_code(Some("en"));
    let p = Driver { stack };

    progress(&format!("[1/7] {users} users join: the first by itself, the others by referral links"));
    p.text(&admin, "/start").await?;
    p.text(&people[0], "/start").await?;
    let code = stack
        .bot
        .parts
        .growth
        .members()
        .get(UserId(people[0].id))
        .await
        .map_err(|e| StackError(e.to_string()))?
        .map(|m| m.referral_code)
        .ok_or_else(|| StackError("the first user did not join".to_owned()))?;
    for user in &people[1..] {
        p.text(user, &format!("/start ref_{code}")).await?;
    }

    progress("[2/7] top-ups: odd users by card (YooKassa), even users by Telegram Stars");
    for (n, user) in people.iter().enumerate() {
        p.text(user, "/topup").await?;
        if n % 2 == 0 {
            p.press(user, |d| d == "tc:50000").await?;
            let id = p.last_payment(user).await?;
            let status = stack.pay_card(&id).await?;
            if status != 200 {
                return Err(StackError(format!("the YooKassa notice was answered {status}")));
            }
        } else {
            p.press(user, |d| d == "ts:250").await?;
            p.pay_stars(user, 250).await?;
        }
    }

    progress(&format!("[3/7] {jobs} generations: images, a photo edit, videos"));
    let mut ordered = 0;
    // A video through /video: model, duration, prompt.
    let video_user = &people[0];
    p.text(video_user, "/video").await?;
    p.press(video_user, |d| d == "vm:kling-2.6").await?;
    p.press(video_user, |d| d == "vd:5").await?;
    p.text(video_user, "a red fox running through snow at dawn").await?;
    p.press(video_user, |d| d.starts_with("c:")).await?;
    ordered += 1;
    // A photo edit.
    let editor = &people[1 % people.len()];
    let (file_id, unique) = stack.telegram.add_file(tiny_png(), "image/png");
    let body = updates::photo_message(stack.update_id(), editor, &[(&file_id, &unique, 64, 64)], Some("make it blue"));
    p.deliver(body).await?;
    p.press(editor, |d| d.starts_with("c:")).await?;
    ordered += 1;
    // A prompt the provider blocks: the job fails and the money comes back.
    stack.gemini.script().push(GeminiOutcome::Blocked);
    let blocked = &people[2 % people.len()];
    p.text(blocked, "something the model refuses").await?;
    p.press(blocked, |d| d.starts_with("c:")).await?;
    ordered += 1;

    progress("[4/7] the main image provider fails; the reserve takes over");
    for _ in 0..3 {
        stack.gemini.script().push(GeminiOutcome::ServerError);
    }
    let mut n = 0usize;
    while ordered < jobs {
        let user = &people[n % people.len()];
        p.text(user, &format!("a watercolor lighthouse, variant {n}")).await?;
        p.press(user, |d| d.starts_with("c:")).await?;
        ordered += 1;
        n += 1;
    }

    progress("[5/7] waiting for every job to end");
    let deadline = Instant::now() + options.deadline;
    let mut told = None;
    loop {
        let counts = p.counts().await?;
        let open = counts.queued + counts.running + counts.unknown;
        let ended = counts.succeeded + counts.failed + counts.cancelled;
        if told != Some(ended) {
            progress(&format!("      {ended} of {} jobs ended", ended + open));
            told = Some(ended);
        }
        if open == 0 {
            break;
        }
        if Instant::now() > deadline {
            progress(&format!("      {open} jobs still open at the deadline"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    progress("[6/7] the admin refunds a delivered job, adjusts a balance and sends a broadcast");
    let delivered =
        stack.engine.jobs().list(JobState::Succeeded, None, 1_000).await.map_err(|e| StackError(e.to_string()))?;
    if let Some(job) = delivered.iter().rev().find(|j| j.product.as_str().starts_with("image.")) {
        p.text(&admin, &format!("/admin_refund {}", job.id)).await?;
    }
    p.text(&admin, &format!("/add {} 50 sandbox bonus", people[0].id)).await?;
    p.text(&admin, "/broadcast all News | https://example.org/news").await?;
    p.text(&admin, "New models are here: try Kling 3.0 with /video").await?;
    p.press(&admin, |d| d == "bs").await?;
    let broadcast_sent = p.broadcast_done(&admin, options.deadline).await?;

    progress("[7/7] summary");
    let engine = &stack.engine;
    let reports = engine.reports();
    let since = rei_core::time::Timestamp::from_millis(0);
    let until = engine.clock().now().plus(Duration::from_secs(1));
    let fail = |e: &dyn std::fmt::Display| StackError(e.to_string());
    let jobs = reports.jobs(since, until).await.map_err(|e| fail(&e))?;
    let providers = reports.providers(since, until).await.map_err(|e| fail(&e))?;
    let money = reports.money(since, until).await.map_err(|e| fail(&e))?;
    let mut balances = Vec::new();
    for user in people.iter().chain(std::iter::once(&admin)) {
        let b = engine.billing().balance(UserId(user.id)).await.map_err(|e| fail(&e))?;
        balances.push((user.id, b.available, b.held));
    }
    let verify = engine.billing().verify().await.map_err(|e| fail(&e))?;
    let members = stack.bot.parts.growth.members().stats(engine.clock().now()).await.map_err(|e| fail(&e))?;
    Ok(Summary {
        users: members.total,
        balances,
        jobs,
        providers,
        money,
        broadcast_sent,
        verify,
        elapsed: started.elapsed(),
    })
}

/// A 1×1 PNG.
fn tiny_png() -> Vec<u8> {
    vec![
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00,
        0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0, 0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF,
        0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ]
}

/// Plays users' parts against the stack: what Telegram would send when a user types or presses.
pub struct Driver<'a> {
    /// The stack driven.
    pub stack: &'a Stack,
}

impl Driver<'_> {
    /// Delivers an update; anything but 200 is an error.
    ///
    /// # Errors
    /// [`StackError`] for another status or no answer.
    pub async fn deliver(&self, body: Vec<u8>) -> Result<(), StackError> {
        match self.stack.deliver(body).await? {
            200 => Ok(()),
            status => Err(StackError(format!("the webhook answered {status}"))),
        }
    }

    /// The user sends `text`.
    ///
    /// # Errors
    /// As [`Driver::deliver`].
    pub async fn text(&self, user: &TestUser, text: &str) -> Result<(), StackError> {
        self.deliver(updates::text_message_from(self.stack.update_id(), user, text)).await
    }

    /// The newest button in the user's chat whose data matches: its message and data.
    #[must_use]
    pub fn button(&self, user: &TestUser, matches: impl Fn(&str) -> bool) -> Option<(i64, String)> {
        self.stack.telegram.sent_to(user.id).iter().rev().find_map(|m| {
            buttons(m.reply_markup.as_ref()).into_iter().find(|(_, d)| matches(d)).map(|(_, d)| (m.message_id, d))
        })
    }

    /// Presses a button with `data` under message `message_id`, as a client that still shows it would.
    ///
    /// # Errors
    /// As [`Driver::deliver`].
    pub async fn press_data(&self, user: &TestUser, message_id: i64, data: &str) -> Result<(), StackError> {
        let id = self.stack.update_id();
        self.deliver(updates::callback_query(id, &format!("q{id}"), user, data, user.id, message_id)).await
    }

    /// Presses the newest button in the user's chat whose data matches.
    ///
    /// # Errors
    /// No such button; as [`Driver::deliver`].
    pub async fn press(&self, user: &TestUser, matches: impl Fn(&str) -> bool) -> Result<(), StackError> {
        let sent = self.stack.telegram.sent_to(user.id);
        let found = sent.iter().rev().find_map(|m| {
            buttons(m.reply_markup.as_ref()).into_iter().find(|(_, d)| matches(d)).map(|(_, d)| (m.message_id, d))
        });
        let Some((message_id, data)) = found else {
            let last = sent.last().and_then(|m| m.current_text.clone()).unwrap_or_default();
            return Err(StackError(format!("no matching button for user {}; the last message: {last:?}", user.id)));
        };
        let id = self.stack.update_id();
        self.deliver(updates::callback_query(id, &format!("q{id}"), user, &data, user.id, message_id)).await
    }

    /// The user's newest YooKassa payment.
    ///
    /// # Errors
    /// None was made.
    pub async fn last_payment(&self, user: &TestUser) -> Result<String, StackError> {
        let page = self
            .stack
            .engine
            .payments()
            .list_for_user(UserId(user.id), None, 1)
            .await
            .map_err(|e| StackError(e.to_string()))?;
        page.records
            .first()
            .map(|r| r.id.to_string())
            .ok_or_else(|| StackError("no card payment was created".to_owned()))
    }

    /// Pays the Stars invoice sent to the user: the pre-checkout, then the payment, as Telegram sends them.
    ///
    /// # Errors
    /// No invoice was sent; as [`Driver::deliver`].
    pub async fn pay_stars(&self, user: &TestUser, stars: u64) -> Result<(), StackError> {
        let invoice = self
            .stack
            .telegram
            .calls_of("sendInvoice")
            .into_iter()
            .rev()
            .find(|c| c.params.get("chat_id").and_then(Value::as_i64) == Some(user.id))
            .ok_or_else(|| StackError("no Stars invoice was sent".to_owned()))?;
        let payload = invoice.params.get("payload").and_then(Value::as_str).unwrap_or_default().to_owned();
        let id = self.stack.update_id();
        self.deliver(updates::pre_checkout_query(id, &format!("pcq{id}"), user.id, "XTR", stars, &payload)).await?;
        let id = self.stack.update_id();
        self.deliver(updates::successful_payment(id, user.id, "XTR", stars, &payload, &format!("stx-{id}"))).await
    }

    /// Every job by state.
    ///
    /// # Errors
    /// The store failed.
    pub async fn counts(&self) -> Result<JobCounts, StackError> {
        let now = self.stack.engine.clock().now();
        self.stack
            .engine
            .reports()
            .jobs(rei_core::time::Timestamp::from_millis(0), now.plus(Duration::from_secs(1)))
            .await
            .map_err(|e| StackError(e.to_string()))
    }

    /// Waits for the broadcast's final progress message; returns the count sent.
    ///
    /// # Errors
    /// It did not finish within `deadline`.
    pub async fn broadcast_done(&self, admin: &TestUser, deadline: Duration) -> Result<u64, StackError> {
        let until = Instant::now() + deadline;
        loop {
            let done = self.stack.telegram.sent_to(admin.id).into_iter().rev().find_map(|m| {
                let text = m.current_text?;
                let finished = m.reply_markup.is_none() && text.starts_with("📣") && !text.contains("running");
                finished.then_some(text)
            });
            if let Some(text) = done {
                let sent =
                    text.split(':').nth(1).and_then(|t| t.split_whitespace().next()).and_then(|n| n.parse().ok());
                return Ok(sent.unwrap_or(0));
            }
            if Instant::now() > until {
                return Err(StackError("the broadcast did not finish in time".to_owned()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
