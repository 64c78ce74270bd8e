//! One simulated Telegram user: what a person does in the bot, sent to the real webhook as Telegram sends it,
//! with what the bot sends back seen at the fake Bot API.
//!
//! A user joins with `/start`, tops up 500 ₽ by card (the YooKassa payment made by the bot, paid at the fake,
//! its notice posted to the webhook), then until the deadline: sends a prompt, and on the quote presses Confirm
//! (sometimes twice at once, a double tap), or Cancel; after a Confirm it waits for the result or the failure
//! notice. It tops up again every [`TOPUP_EVERY`] generations, and pauses about `think` between its updates.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rei_adapters::fakes::telegram::SentMessage;
use rei_adapters::fakes::telegram::updates::{self, TestUser};
use rei_adapters::fakes::yookassa::FakeYooKassa;
use serde_json::Value;
use tokio::sync::mpsc;

use super::harness::{Rng, WEBHOOK_SECRET};

/// Generations between two top-ups.
pub(crate) const TOPUP_EVERY: u32 = 10;
/// The card top-up, kopecks (a button the shipped settings offer).
pub(crate) const TOPUP_KOPECKS: i64 = 50_000;
/// How often an update is delivered again after a failed delivery (Telegram keeps trying for hours).
const REDELIVERIES: u32 = 8;
/// The longest wait for a job's end after its Confirm was answered.
const END_WAIT: Duration = Duration::from_secs(120);

/// A message the bot sent into a user's chat, as the fake saw it.
#[derive(Debug)]
pub(crate) struct Seen {
    message_id: i64,
    method: String,
    text: Option<String>,
    markup: Option<Value>,
    at: Instant,
}

impl Seen {
    pub(crate) fn of(message: &SentMessage) -> Seen {
        Seen {
            message_id: message.message_id,
            method: message.method.clone(),
            text: message.text.clone(),
            markup: message.reply_markup.clone(),
            at: Instant::now(),
        }
    }

    fn buttons(&self) -> impl Iterator<Item = &serde_json::Map<String, Value>> {
        self.markup
            .as_ref()
            .and_then(|m| m.get("inline_keyboard"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .flatten()
            .filter_map(Value::as_object)
    }

    fn data(&self, matches: impl Fn(&str) -> bool) -> Option<String> {
        self.buttons()
            .filter_map(|b| b.get("callback_data").and_then(Value::as_str))
            .find(|d| matches(d))
            .map(str::to_owned)
    }

    fn payment(&self) -> Option<String> {
        self.buttons()
            .filter_map(|b| b.get("url").and_then(Value::as_str))
            .find_map(|u| u.split_once("/confirm/").map(|(_, id)| id.to_owned()))
    }

    /// How this message ends a job, if it does.
    fn end(&self) -> Option<End> {
        let text = self.text.as_deref().unwrap_or("");
        if self.method == "sendPhoto" && text.starts_with("✨") {
            Some(End::Delivered)
        } else if text.starts_with("😔") {
            Some(End::Failed)
        } else if text.starts_with("The job was cancelled") {
            Some(End::Cancelled)
        } else {
            None
        }
    }
}

/// How a job ended, as the user saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    Delivered,
    Failed,
    Cancelled,
}

/// One confirmed generation, as the user lived it.
#[derive(Clone, Debug)]
pub(crate) struct Generation {
    /// When the Confirm's webhook call was answered.
    pub(crate) answered: Instant,
    /// When the result (or the failure) reached the chat.
    pub(crate) ended: Option<(Instant, End)>,
}

/// What one user did and saw.
#[derive(Debug, Default)]
pub(crate) struct Record {
    pub(crate) id: i64,
    /// Every webhook call answered 200, microseconds.
    pub(crate) webhook_us: Vec<u64>,
    pub(crate) generations: Vec<Generation>,
    /// Top-ups whose notice the server answered 200, kopecks.
    pub(crate) topped_up: Vec<i64>,
    /// Ends seen for no waiting generation (a second delivery of one job, say).
    pub(crate) stray_ends: Vec<End>,
    pub(crate) errors: BTreeMap<&'static str, u64>,
    pub(crate) cancels: u64,
    pub(crate) double_taps: u64,
}

/// What every user shares: the server, the update ids, the fake YooKassa, the counters the progress line shows.
pub(crate) struct Shared {
    pub(crate) http: reqwest::Client,
    pub(crate) webhook: String,
    pub(crate) yookassa_webhook: String,
    pub(crate) next_update: AtomicI64,
    pub(crate) updates: AtomicU64,
    pub(crate) generations: AtomicU64,
    pub(crate) errors: AtomicU64,
    /// Users whose last job has not ended yet (after the deadline: those still waiting for one).
    pub(crate) playing: AtomicU64,
    pub(crate) think: Duration,
    pub(crate) cancel_per_mille: u64,
    pub(crate) double_tap_per_mille: u64,
}

/// A simulated user.
pub(crate) struct User {
    who: TestUser,
    seen: mpsc::UnboundedReceiver<Seen>,
    /// Ends seen while the user was looking for another reply (a result may reach the chat before the Confirm's
    /// own webhook call is answered).
    ends: std::collections::VecDeque<(Instant, End)>,
    shared: Arc<Shared>,
    rng: Rng,
    record: Record,
}

/// Why an update did not get the answer the user expected (the user's `errors` count each by name).
type Failure = &'static str;

impl User {
    pub(crate) fn new(id: i64, seen: mpsc::UnboundedReceiver<Seen>, shared: Arc<Shared>) -> User {
        let who = TestUser::new(id).first_name("Load").language_code(Some("en"));
        let rng = Rng::new(u64::try_from(id).unwrap_or(1).wrapping_mul(0x2545_f491_4f6c_dd1d));
        User { who, seen, ends: Default::default(), shared, rng, record: Record { id, ..Record::default() } }
    }

    fn fail(&mut self, why: Failure) {
        *self.record.errors.entry(why).or_default() += 1;
        self.shared.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Plays until `deadline`, then waits for its last job; returns what it did.
    pub(crate) async fn play(
        mut self,
        deadline: Instant,
        yookassa: Arc<FakeYooKassa>,
    ) -> (Record, mpsc::UnboundedReceiver<Seen>) {
        self.shared.playing.fetch_add(1, Ordering::Relaxed);
        // Spread the first updates over a think time, so that users do not all arrive in the same millisecond.
        let start = self.rng.below(u64::try_from(self.shared.think.as_millis()).unwrap_or(1_000).max(1));
        tokio::time::sleep(Duration::from_millis(start)).await;
        if let Err(why) = self.text("/start").await {
            self.fail(why);
        }
        let mut since_topup = TOPUP_EVERY;
        while Instant::now() < deadline {
            if since_topup >= TOPUP_EVERY {
                match self.top_up(&yookassa).await {
                    Ok(()) => since_topup = 0,
                    Err(why) => self.fail(why),
                }
                self.think().await;
            }
            match self.generation().await {
                Ok(true) => since_topup += 1,
                Ok(false) => {}
                Err("no_quote") => {
                    // Most often the balance ran out: top up before the next prompt.
                    self.fail("no_quote");
                    since_topup = TOPUP_EVERY;
                }
                Err(why) => self.fail(why),
            }
            self.think().await;
        }
        self.record.stray_ends.extend(self.ends.drain(..).map(|(_, end)| end));
        self.shared.playing.fetch_sub(1, Ordering::Relaxed);
        (self.record, self.seen)
    }

    async fn think(&mut self) {
        let mean = u64::try_from(self.shared.think.as_millis()).unwrap_or(1_000);
        if mean > 0 {
            let pause = mean / 2 + self.rng.below(mean + 1);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }

    /// Posts an update to the webhook as Telegram does: again, with the same update id, after an answer other
    /// than 200 or none (up to [`REDELIVERIES`] times, backing off); the messages the bot sent on the way are in
    /// `seen` when it returns.
    async fn deliver(&mut self, body: Vec<u8>) -> Result<(), Failure> {
        let mut wait = Duration::from_millis(200);
        let mut last = "webhook_unreachable";
        for _ in 0..=REDELIVERIES {
            match self.deliver_once(body.clone()).await {
                Ok(()) => return Ok(()),
                Err(why) => {
                    last = why;
                    *self
                        .record
                        .errors
                        .entry(match why {
                            "webhook_5xx" => "redelivered_after_5xx",
                            "webhook_timeout" => "redelivered_after_timeout",
                            "webhook_4xx" => return Err(why),
                            _ => "redelivered_after_no_answer",
                        })
                        .or_default() += 1;
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
        Err(last)
    }

    async fn deliver_once(&mut self, body: Vec<u8>) -> Result<(), Failure> {
        let started = Instant::now();
        let response = self
            .shared
            .http
            .post(&self.shared.webhook)
            .header("content-type", "application/json")
            .header("x-telegram-bot-api-secret-token", WEBHOOK_SECRET)
            .body(body)
            .send()
            .await;
        let elapsed = started.elapsed();
        match response {
            Ok(r) if r.status().is_success() => {
                self.record.webhook_us.push(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
                self.shared.updates.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Ok(r) if r.status().is_server_error() => Err("webhook_5xx"),
            Ok(_) => Err("webhook_4xx"),
            Err(e) if e.is_timeout() => Err("webhook_timeout"),
            Err(_) => Err("webhook_unreachable"),
        }
    }

    fn update_id(&self) -> i64 {
        self.shared.next_update.fetch_add(1, Ordering::Relaxed)
    }

    async fn text(&mut self, text: &str) -> Result<Vec<Seen>, Failure> {
        let body = updates::text_message_from(self.update_id(), &self.who, text);
        self.deliver(body).await?;
        Ok(self.replies())
    }

    /// A press whose replies stay in `seen` for the caller to read.
    async fn press_keeping_replies(&mut self, message_id: i64, data: &str) -> Result<(), Failure> {
        let id = self.update_id();
        let body = updates::callback_query(id, &format!("q{id}"), &self.who, data, self.who.id, message_id);
        self.deliver(body).await
    }

    async fn press(&mut self, message_id: i64, data: &str) -> Result<Vec<Seen>, Failure> {
        let id = self.update_id();
        let body = updates::callback_query(id, &format!("q{id}"), &self.who, data, self.who.id, message_id);
        self.deliver(body).await?;
        Ok(self.replies())
    }

    /// The messages seen since the last look; ends of jobs among them are kept for [`User::wait_end`].
    fn replies(&mut self) -> Vec<Seen> {
        let mut out = Vec::new();
        while let Ok(seen) = self.seen.try_recv() {
            if let Some(end) = seen.end() {
                self.ends.push_back((seen.at, end));
            } else {
                out.push(seen);
            }
        }
        out
    }

    async fn top_up(&mut self, yookassa: &FakeYooKassa) -> Result<(), Failure> {
        let menu = self.text("/topup").await?;
        let wanted = format!("tc:{TOPUP_KOPECKS}");
        let Some((message, data)) = menu.iter().rev().find_map(|m| m.data(|d| d == wanted).map(|d| (m.message_id, d)))
        else {
            return Err("no_topup_menu");
        };
        let offer = self.press(message, &data).await?;
        let Some(id) = offer.iter().rev().find_map(Seen::payment) else { return Err("no_payment_link") };
        if !yookassa.set_status(&id, "succeeded") {
            return Err("payment_unknown_to_yookassa");
        }
        let notice = serde_json::json!({"type": "notification", "event": "payment.succeeded", "object": {"id": id}});
        let started = Instant::now();
        // YooKassa, too, sends a notice again until it is answered 200.
        let mut answer = self.shared.http.post(&self.shared.yookassa_webhook).json(&notice).send().await;
        let mut wait = Duration::from_millis(200);
        for _ in 0..REDELIVERIES {
            if answer.as_ref().is_ok_and(|r| r.status().is_success() || r.status().is_client_error()) {
                break;
            }
            *self.record.errors.entry("payment_notice_redelivered").or_default() += 1;
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
            answer = self.shared.http.post(&self.shared.yookassa_webhook).json(&notice).send().await;
        }
        match answer {
            Ok(r) if r.status().is_success() => {
                self.record.webhook_us.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
                self.shared.updates.fetch_add(1, Ordering::Relaxed);
                self.record.topped_up.push(TOPUP_KOPECKS);
                // The credit's message to the user is not awaited.
                let _ = self.replies();
                Ok(())
            }
            Ok(_) => Err("payment_notice_refused"),
            Err(_) => Err("payment_notice_unanswered"),
        }
    }

    /// A prompt, its quote, and Confirm (once or twice) or Cancel; `Ok(true)` when a job was confirmed.
    async fn generation(&mut self) -> Result<bool, Failure> {
        let n = self.record.generations.len();
        let prompt = format!("a lighthouse at dusk, user {} take {n}", self.who.id);
        let quote = self.text(&prompt).await?;
        let Some((message, confirm)) =
            quote.iter().rev().find_map(|m| m.data(|d| d.starts_with("c:")).map(|d| (m.message_id, d)))
        else {
            return Err("no_quote");
        };
        self.think().await;
        // Every earlier job was waited for: an end still kept now is one too many (a job delivered twice).
        self.record.stray_ends.extend(self.ends.drain(..).map(|(_, end)| end));
        let roll = self.rng.below(1_000);
        if roll < self.shared.cancel_per_mille {
            let cancel = format!("x:{}", &confirm[2..]);
            self.press(message, &cancel).await?;
            self.record.cancels += 1;
            return Ok(false);
        }
        let double = roll < self.shared.cancel_per_mille + self.shared.double_tap_per_mille;
        let mut answered = self.confirm(message, &confirm, double).await?;
        // "Something went wrong … please try again": a person presses Confirm again (the order is keyed by its
        // quote, so a press that did take is not ordered twice).
        let mut tries = 0;
        while self.replies_say_try_later() {
            tries += 1;
            *self.record.errors.entry("confirm_try_later").or_default() += 1;
            if tries > 3 {
                return Err("confirm_gave_up");
            }
            self.think().await;
            answered = self.confirm(message, &confirm, false).await?;
        }
        self.shared.generations.fetch_add(1, Ordering::Relaxed);
        self.record.generations.push(Generation { answered, ended: None });
        let ended = self.wait_end(answered + END_WAIT).await;
        if let Some(last) = self.record.generations.last_mut() {
            last.ended = ended;
        }
        if ended.is_none() {
            return Err("end_not_seen");
        }
        Ok(true)
    }

    /// Whether the replies since the last look ask the user to try again.
    fn replies_say_try_later(&mut self) -> bool {
        self.replies().iter().any(|m| m.text.as_deref().is_some_and(|t| t.starts_with("Something went wrong")))
    }

    /// Presses Confirm (twice at once for a double tap); when the press was answered.
    async fn confirm(&mut self, message: i64, confirm: &str, double: bool) -> Result<Instant, Failure> {
        if double {
            // Both taps reach the server at once; one job must come of them.
            self.record.double_taps += 1;
            let ids = (self.update_id(), self.update_id());
            let first =
                updates::callback_query(ids.0, &format!("q{}", ids.0), &self.who, confirm, self.who.id, message);
            let second =
                updates::callback_query(ids.1, &format!("q{}", ids.1), &self.who, confirm, self.who.id, message);
            let mut twin = User {
                who: self.who.clone(),
                seen: mpsc::unbounded_channel().1,
                ends: Default::default(),
                shared: self.shared.clone(),
                rng: self.rng.clone(),
                record: Record::default(),
            };
            let (a, b) = tokio::join!(self.deliver(first), twin.deliver(second));
            self.record.webhook_us.append(&mut twin.record.webhook_us);
            a?;
            b?;
            Ok(Instant::now())
        } else {
            self.press_keeping_replies(message, confirm).await?;
            Ok(Instant::now())
        }
    }

    /// The end of the job just confirmed: the first end message to arrive.
    async fn wait_end(&mut self, until: Instant) -> Option<(Instant, End)> {
        if let Some(early) = self.ends.pop_front() {
            return Some(early);
        }
        loop {
            let left = until.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.seen.recv()).await {
                Ok(Some(seen)) => {
                    if let Some(end) = seen.end() {
                        return Some((seen.at, end));
                    }
                }
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// After the run, ends that came late (after the user stopped waiting) or twice.
    pub(crate) fn drain_strays(seen: &mut mpsc::UnboundedReceiver<Seen>, record: &mut Record) {
        while let Ok(s) = seen.try_recv() {
            if let Some(end) = s.end() {
                record.stray_ends.push(end);
            }
        }
    }
}
