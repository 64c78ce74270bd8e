//! REI's Telegram bot: every flow of the shipped bot over the engine's money core.
//!
//! - [`Bot`] takes each Telegram update (from the webhook, as an [`UpdateHandler`], or from [`poll`]'s long
//!   polling) and answers it through the Bot API: `/start` with trial and referral, balance, top-ups by card
//!   or Stars, history, language, help, promo codes; images from text and edits of photos; videos through
//!   `/video`; the admin commands and broadcasts.
//! - Every money move is the engine's keyed operation: a quote's confirmation holds once however often its button
//!   is pressed, a grant is keyed by what earned it, an admin action by the update that asked for it, so that an
//!   update handled twice (redelivered, or taken by two processes) moves money once.
//! - Nothing lives in process memory between updates: the conversation is in the store
//!   ([`state::State`]), so any number of bot processes can share one webhook.
//! - [`delivery::TelegramMessenger`] is the worker's side: it sends each finished result (a photo and the original
//!   file, or a video) or failure to the user, once.
//!
//! Every text is in the catalogue ([`i18n`]), in Russian and English.

pub mod catalog;
pub mod delivery;
pub mod growth;
pub mod i18n;
pub mod keys;
pub mod poll;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod state;

mod account;
mod admin;
mod broadcast;
mod order;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rei::Engine;
use rei_adapters::telegram::{
    BotApi, BotApiError, Button, ChatKind, Content, Keyboard, Sender, Sent, Update, parse_update,
};
use rei_core::generation::AssetStore;
use rei_core::guards::{Decision, RateLimitKey, RateLimitPolicy, RateLimiter, Role};
use rei_core::ids::UserId;
use rei_core::jobs::Priority;
use rei_core::members::{Growth, Member, Profile};
use rei_core::money::Money;
use rei_core::time::Timestamp;
use rei_core::topups::TopUps;
use rei_http::stars::StarsHook;
use rei_http::webhooks::{UpdateError, UpdateHandler};

pub use catalog::Catalog;
pub use i18n::Lang;

use crate::i18n::{ButtonText, Text};
use crate::keys::{Action, MenuItem};

/// How stale a member's `last_seen_at` may be before an update writes it again.
const SEEN_RESOLUTION: std::time::Duration = std::time::Duration::from_secs(60);

/// How the bot behaves.
#[derive(Clone, Debug)]
pub struct BotConfig {
    /// The bot's username (without `@`), for referral links.
    pub username: String,
    /// Who administers the bot (`ADMIN_IDS`): the first is the owner, the others admins.
    pub admins: Vec<UserId>,
    /// What is sold.
    pub catalog: Catalog,
    /// The card top-up amounts offered.
    pub card_amounts: Vec<Money>,
    /// The Stars top-ups offered.
    pub star_amounts: Vec<u32>,
    /// The longest prompt taken, in characters.
    pub prompt_chars_max: usize,
    /// The largest file downloaded from Telegram (its Bot API serves at most 20 MB).
    pub download_bytes_max: u64,
    /// How many updates a user may send: the rest get a polite wait.
    pub user_rate: RateLimitPolicy,
    /// Where YooKassa sends the payer back.
    pub return_url: String,
    /// Lines per history page.
    pub history_page: usize,
    /// The time zone of the times shown.
    pub time_zone: String,
    /// The priority of the jobs ordered.
    pub priority: Priority,
    /// How often a running broadcast updates its progress message.
    pub progress_every: Duration,
}

impl BotConfig {
    /// The shipped behaviour for the bot `username`: the shipped catalogue, 100/300/500/1000 ₽ and 50/100/250
    /// Stars, prompts up to 1,000 characters, 20 MB downloads, 20 updates a minute per user (bursts of 10),
    /// history pages of 10, Moscow time.
    ///
    /// # Panics
    /// Never: the rate policy is a valid constant.
    #[must_use]
    pub fn new(username: &str) -> BotConfig {
        BotConfig {
            username: username.trim_start_matches('@').to_owned(),
            admins: Vec::new(),
            catalog: Catalog::shipped(),
            card_amounts: [100, 300, 500, 1_000].into_iter().map(|r| Money::from_kopecks(r * 100)).collect(),
            star_amounts: vec![50, 100, 250],
            prompt_chars_max: 1_000,
            download_bytes_max: 20 * 1024 * 1024,
            user_rate: RateLimitPolicy::new(20, Duration::from_secs(60), 10)
                .unwrap_or_else(|e| panic!("invariant broken: the shipped rate policy: {e}")),
            return_url: format!("https://t.me/{}", username.trim_start_matches('@')),
            history_page: 10,
            time_zone: "Europe/Moscow".to_owned(),
            priority: Priority::Normal,
            progress_every: Duration::from_secs(2),
        }
    }

    /// The role of `user`.
    #[must_use]
    pub fn role(&self, user: UserId) -> Role {
        match self.admins.iter().position(|a| *a == user) {
            Some(0) => Role::Owner,
            Some(_) => Role::Admin,
            None => Role::User,
        }
    }
}

/// What the bot runs on.
pub struct BotParts {
    /// The engine: billing, jobs, stores.
    pub engine: Arc<Engine>,
    /// The bot's Bot API client.
    pub api: Arc<BotApi>,
    /// Members, trials, referrals, promo codes, bans.
    pub growth: Arc<Growth>,
    /// Card top-ups (`None`: not configured).
    pub topups: Option<Arc<TopUps>>,
    /// Stars top-ups (`None`: not configured).
    pub stars: Option<Arc<StarsHook>>,
    /// The per-user rate limit's store.
    pub limiter: Arc<dyn RateLimiter>,
    /// Where input photos are put for the workers.
    pub assets: Arc<dyn AssetStore>,
}

/// The bot.
pub struct Bot {
    parts: BotParts,
    config: BotConfig,
    tz: jiff::tz::TimeZone,
    /// The broadcasts running in this process, by admin: their stop flags.
    broadcasts: Mutex<HashMap<UserId, Arc<std::sync::atomic::AtomicBool>>>,
    /// The bot itself, for the work it starts in the background (broadcasts).
    me: std::sync::Weak<Bot>,
}

/// Why the bot cannot start.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// The configuration is wrong.
    #[error("the bot's configuration: {0}")]
    Config(String),
}

impl Bot {
    /// A bot over `parts`.
    ///
    /// # Errors
    /// [`BotError::Config`] for an unknown time zone, or a catalogue product the price list does not price.
    pub fn new(parts: BotParts, config: BotConfig) -> Result<Arc<Bot>, BotError> {
        let tz = jiff::tz::TimeZone::get(&config.time_zone)
            .map_err(|e| BotError::Config(format!("time zone {:?}: {e}", config.time_zone)))?;
        if config.catalog.images.is_empty() {
            return Err(BotError::Config("the catalogue has no image model".to_owned()));
        }
        for product in config.catalog.products() {
            if !parts.engine.billing().sells(product) {
                return Err(BotError::Config(format!("the price list has no product {product}")));
            }
        }
        Ok(Arc::new_cyclic(|me| Bot { parts, config, tz, broadcasts: Mutex::new(HashMap::new()), me: me.clone() }))
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &BotConfig {
        &self.config
    }

    /// What the bot runs on.
    #[must_use]
    pub fn parts(&self) -> &BotParts {
        &self.parts
    }

    fn now(&self) -> Timestamp {
        self.parts.engine.clock().now()
    }

    /// Handles one update's body.
    ///
    /// # Errors
    /// [`UpdateError::Malformed`] for a body that is not an update; [`UpdateError::Unavailable`] when a store or
    /// Telegram could not be reached (handling it again is safe: every effect is keyed).
    pub async fn handle_update(&self, body: &[u8]) -> Result<(), UpdateError> {
        let update = parse_update(body).map_err(|e| UpdateError::Malformed(e.to_string()))?;
        match update {
            Update::PreCheckout { .. } | Update::SuccessfulPayment { .. } => match &self.parts.stars {
                Some(stars) => self.on_payment(stars, update, body).await,
                None => {
                    tracing::warn!(update_id = update.update_id(), "a Stars update, but Stars are not configured");
                    Ok(())
                }
            },
            Update::Message { update_id, from, chat_kind, content, chat_id, message_id } => {
                let Some(from) = from else {
                    tracing::debug!(update_id, "a message without a sender: ignored");
                    return Ok(());
                };
                if chat_kind != ChatKind::Private || from.is_bot {
                    tracing::debug!(update_id, ?chat_kind, "a message outside a private chat: ignored");
                    return Ok(());
                }
                // A first contact by a referral link joins with its referrer.
                let referral = match &content {
                    Content::Text(t) => {
                        t.strip_prefix("/start ref_").map(|c| c.split_whitespace().next().unwrap_or(""))
                    }
                    _ => None,
                };
                let Some(ctx) = self.context(&from, chat_id, update_id, None, referral).await? else { return Ok(()) };
                self.on_message(&ctx, message_id, content).await
            }
            Update::CallbackQuery { update_id, id, from, data, chat_id, message_id } => {
                let chat = chat_id.unwrap_or(from.id.0);
                let Some(ctx) = self.context(&from, chat, update_id, Some(&id), None).await? else { return Ok(()) };
                let action = data.as_deref().and_then(Action::parse);
                self.on_action(&ctx, &id, message_id, action).await
            }
            Update::MemberStatus { from, blocked, .. } => {
                let members = self.parts.growth.members();
                let now = self.now();
                let done = if blocked { members.mark_blocked(from, now).await } else { members.seen(from, now).await };
                done.map_err(unavailable)
            }
            Update::Other { update_id, kind } => {
                tracing::debug!(update_id, kind, "an update kind the bot does not act on");
                Ok(())
            }
        }
    }

    /// The Stars updates: the pre-checkout answered at once, the payment credited once and the payer told in
    /// their language.
    async fn on_payment(&self, stars: &StarsHook, update: Update, body: &[u8]) -> Result<(), UpdateError> {
        let Update::SuccessfulPayment { chat_id, payment, .. } = update else { return stars.handle(body).await };
        let Some(credit) = stars.credit(&payment).await? else { return Ok(()) };
        if !credit.replayed {
            let lang = self.lang_of(credit.user).await;
            let text = i18n::text(lang, &Text::StarsCredited { amount: credit.amount, stars: credit.stars });
            self.send_quietly(chat_id, &text, None).await;
        }
        Ok(())
    }

    /// The user's context, or `None` when they are banned (ignored and logged) or rate limited (told once).
    async fn context(
        &self,
        from: &Sender,
        chat: i64,
        update_id: i64,
        callback: Option<&str>,
        referral: Option<&str>,
    ) -> Result<Option<Ctx>, UpdateError> {
        let now = self.now();
        let user = from.id;
        let members = self.parts.growth.members();
        let member = members.get(user).await.map_err(unavailable)?;
        if let Some(member) = &member
            && member.is_banned(now)
        {
            tracing::info!(user = %user, update_id, "an update from a banned user: ignored");
            return Ok(None);
        }
        let role = self.config.role(user);
        // Admins are not rate limited: their commands come in bursts (a series of adjustments).
        let decision = if role == Role::User {
            self.parts
                .limiter
                .check(&RateLimitKey::User(user), &self.config.user_rate, 1, now)
                .await
                .map_err(unavailable)?
        } else {
            Decision::Allow { new_tat: now }
        };
        let lang_guess = member
            .as_ref()
            .map_or_else(|| Lang::from_code(from.language_code.as_deref()), |m| Lang::from_code(Some(&m.language)));
        if let Decision::Deny { retry_after } = decision {
            let seconds = retry_after.as_secs().max(1);
            tracing::info!(user = %user, update_id, seconds, "rate limited");
            let text = i18n::text(lang_guess, &Text::RateLimited { seconds });
            match callback {
                Some(id) => self.answer(id, Some(&text)).await,
                None => self.send_quietly(chat, &text, None).await,
            }
            return Ok(None);
        }
        let (member, started) = match member {
            Some(m) => {
                // `last_seen_at` feeds the active-user counts, which are in days: a member seen within the last
                // minute (and not marked as having blocked the bot) is not written again on every update.
                if m.blocked_at.is_some() || now.since(m.last_seen_at) >= SEEN_RESOLUTION {
                    members.seen(user, now).await.map_err(unavailable)?;
                }
                (m, None)
            }
            // A first contact joins as /start does (whatever it is), so that every user has an account.
            None => {
                let started = self.parts.growth.start(&profile(from), referral).await.map_err(unavailable)?;
                (started.member.clone(), Some(started))
            }
        };
        let lang = Lang::from_code(Some(&member.language));
        Ok(Some(Ctx { user, chat, lang, member, update_id, role, from: from.clone(), started }))
    }

    async fn on_message(&self, ctx: &Ctx, message_id: i64, content: Content) -> Result<(), UpdateError> {
        let starting = matches!(&content, Content::Text(t) if t.starts_with("/start"));
        if !starting && let Some(amount) = ctx.started.as_ref().and_then(|s| s.trial) {
            ctx.say(self, Text::TrialGranted { amount }, None).await?;
        }
        match content {
            Content::Text(text) if text.starts_with('/') => self.on_command(ctx, &text).await,
            Content::Text(text) => order::on_text(self, ctx, &text).await,
            Content::Photo { file, caption } => {
                order::on_image(self, ctx, message_id, file, "image/jpeg", caption).await
            }
            Content::Document { file, mime_type, caption, .. } => {
                let mime = mime_type.unwrap_or_default().to_ascii_lowercase();
                if matches!(mime.as_str(), "image/jpeg" | "image/jpg" | "image/png" | "image/webp") {
                    order::on_image(self, ctx, message_id, file, &mime, caption).await
                } else {
                    ctx.say(self, Text::NotAnImage, None).await
                }
            }
            Content::Video { file, caption, .. } => order::on_video_input(self, ctx, &file, caption).await,
            Content::Sticker | Content::Voice | Content::Other => ctx.say(self, Text::ShortHelp, None).await,
        }
    }

    async fn on_command(&self, ctx: &Ctx, text: &str) -> Result<(), UpdateError> {
        let (head, args) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        let args = args.trim();
        // `/cmd@this_bot` is this bot's; `/cmd@another_bot` is not for it.
        let (command, addressee) = head.trim_start_matches('/').split_once('@').unwrap_or((&head[1..], ""));
        if !addressee.is_empty() && !addressee.eq_ignore_ascii_case(&self.config.username) {
            return Ok(());
        }
        match command.to_ascii_lowercase().as_str() {
            "start" => account::start(self, ctx, args).await,
            "balance" => account::balance(self, ctx).await,
            "topup" => account::topup_menu(self, ctx).await,
            "history" => account::history(self, ctx, None, None).await,
            "lang" | "language" => account::lang_menu(self, ctx).await,
            "help" => ctx.say(self, Text::Help, Some(self.menu(ctx.lang))).await,
            "promo" => account::promo(self, ctx, args).await,
            "video" => order::video_start(self, ctx).await,
            "cancel" => order::reset(self, ctx).await,
            other if admin::is_admin_command(other) => admin::command(self, ctx, other, args).await,
            _ => ctx.say(self, Text::ShortHelp, None).await,
        }
    }

    async fn on_action(
        &self,
        ctx: &Ctx,
        query: &str,
        message_id: Option<i64>,
        action: Option<Action>,
    ) -> Result<(), UpdateError> {
        let Some(action) = action else {
            let text = i18n::text(ctx.lang, &Text::QuoteGone);
            self.answer(query, Some(&text)).await;
            return Ok(());
        };
        match action {
            Action::Confirm(quote) => order::confirm(self, ctx, query, message_id, quote).await,
            Action::Cancel(quote) => order::cancel(self, ctx, query, message_id, quote).await,
            Action::VideoModel(key) => order::video_model(self, ctx, query, &key).await,
            Action::VideoSeconds(seconds) => order::video_seconds(self, ctx, query, seconds).await,
            Action::Card(amount) => account::topup_card(self, ctx, query, amount).await,
            Action::Stars(stars) => account::topup_stars(self, ctx, query, stars).await,
            Action::History(before) => account::history(self, ctx, Some(before), Some(query)).await,
            Action::Lang(code) => account::set_lang(self, ctx, query, &code).await,
            Action::BroadcastSend => broadcast::send(self, ctx, query).await,
            Action::BroadcastStop => broadcast::stop(self, ctx, query).await,
            Action::Menu(item) => {
                self.answer(query, None).await;
                match item {
                    MenuItem::Image => ctx.say(self, Text::Help, None).await,
                    MenuItem::Video => order::video_start(self, ctx).await,
                    MenuItem::Balance => account::balance(self, ctx).await,
                    MenuItem::TopUp => account::topup_menu(self, ctx).await,
                    MenuItem::History => account::history(self, ctx, None, None).await,
                    MenuItem::Language => account::lang_menu(self, ctx).await,
                    MenuItem::Help => ctx.say(self, Text::Help, None).await,
                }
            }
        }
    }

    /// The main menu's keyboard.
    fn menu(&self, lang: Lang) -> Keyboard {
        let b = |label, item| callback(lang, label, &Action::Menu(item));
        Keyboard {
            rows: vec![
                vec![b(ButtonText::Image, MenuItem::Image), b(ButtonText::Video, MenuItem::Video)],
                vec![b(ButtonText::Balance, MenuItem::Balance), b(ButtonText::TopUp, MenuItem::TopUp)],
                vec![b(ButtonText::History, MenuItem::History), b(ButtonText::Language, MenuItem::Language)],
                vec![b(ButtonText::Help, MenuItem::Help)],
            ],
        }
    }

    /// The language of `user` (Russian when unknown).
    async fn lang_of(&self, user: UserId) -> Lang {
        match self.parts.growth.members().get(user).await {
            Ok(Some(member)) => Lang::from_code(Some(&member.language)),
            _ => Lang::Ru,
        }
    }

    /// Answers a button press (best effort: a late answer only leaves the client's spinner a little longer).
    async fn answer(&self, query: &str, text: Option<&str>) {
        if let Err(e) = self.parts.api.answer_callback_query(query, text, false).await {
            tracing::debug!(error = %e, "could not answer a button press");
        }
    }

    /// Sends a message whose loss is not worth a redelivery (a notice after the fact).
    async fn send_quietly(&self, chat: i64, text: &str, keyboard: Option<&Keyboard>) {
        if let Err(e) = self.parts.api.send_message(chat, text, keyboard).await {
            tracing::warn!(chat, error = %e, "could not send a notice");
        }
    }

    /// Sends a message as an answer to the update: a failure to reach Telegram hands the update back for a
    /// redelivery; a user who blocked the bot is marked so.
    async fn send(&self, ctx: &Ctx, text: &str, keyboard: Option<&Keyboard>) -> Result<Option<Sent>, UpdateError> {
        match self.parts.api.send_message(ctx.chat, text, keyboard).await {
            Ok(sent) => Ok(Some(sent)),
            Err(e) => self.send_failed(ctx, &e).await.map(|()| None),
        }
    }

    async fn send_failed(&self, ctx: &Ctx, e: &BotApiError) -> Result<(), UpdateError> {
        if e.is_blocked() {
            tracing::info!(user = %ctx.user, "the user blocked the bot");
            return self.parts.growth.members().mark_blocked(ctx.user, self.now()).await.map_err(unavailable);
        }
        match e {
            BotApiError::Api { code, .. } if *code < 500 && *code != 429 => {
                // Our request was wrong: sending it again would fail again.
                tracing::error!(user = %ctx.user, error = %e, "telegram refused a message");
                Ok(())
            }
            _ => Err(UpdateError::Unavailable(format!("sending a message: {e}"))),
        }
    }

    /// The user's conversation.
    pub(crate) async fn load_state(&self, user: UserId) -> Result<state::State, UpdateError> {
        let stored = self.parts.engine.conversations().get(user).await.map_err(unavailable)?;
        Ok(state::State::read(stored.as_ref().map(|c| c.state.as_str())))
    }

    /// Keeps the user's conversation (an empty one is cleared).
    pub(crate) async fn save_state(&self, user: UserId, state: &state::State) -> Result<(), UpdateError> {
        let store = self.parts.engine.conversations();
        if state.is_empty() {
            return store.clear(user).await.map_err(unavailable);
        }
        store.put(user, &state.write(rei_core::chat::STATE_BYTES_MAX), self.now()).await.map_err(unavailable)
    }

    /// The referral link of `member`.
    fn referral_link(&self, member: &Member) -> String {
        format!("https://t.me/{}?start=ref_{}", self.config.username, member.referral_code)
    }

    /// `at` as `YYYY-MM-DD HH:MM` in the bot's time zone.
    fn local_time(&self, at: Timestamp) -> String {
        match jiff::Timestamp::from_millisecond(at.as_millis()) {
            Ok(t) => t.to_zoned(self.tz.clone()).strftime("%Y-%m-%d %H:%M").to_string(),
            Err(_) => "—".to_owned(),
        }
    }
}

#[async_trait]
impl UpdateHandler for Bot {
    async fn handle(&self, body: &[u8]) -> Result<(), UpdateError> {
        self.handle_update(body).await
    }
}

/// One update's user, chat and language.
pub(crate) struct Ctx {
    pub(crate) user: UserId,
    pub(crate) chat: i64,
    pub(crate) lang: Lang,
    pub(crate) member: Member,
    /// The update's id: the key of what it asks for.
    pub(crate) update_id: i64,
    pub(crate) role: Role,
    pub(crate) from: Sender,
    /// What joining did, when this update was the user's first.
    pub(crate) started: Option<rei_core::members::Started>,
}

impl Ctx {
    /// Sends `text` (in the user's language) with `keyboard`.
    pub(crate) async fn say(&self, bot: &Bot, text: Text<'_>, keyboard: Option<Keyboard>) -> Result<(), UpdateError> {
        let rendered = i18n::text(self.lang, &text);
        bot.send(self, &rendered, keyboard.as_ref()).await.map(drop)
    }
}

/// A callback button.
pub(crate) fn callback(lang: Lang, label: ButtonText, action: &Action) -> Button {
    Button::Callback { text: i18n::button(lang, label), data: action.encode() }
}

/// The profile Telegram tells of a sender, cut to the store's limits.
pub(crate) fn profile(from: &Sender) -> Profile {
    let cut = |s: &str, max: usize| {
        let mut end = s.len().min(max);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].to_owned()
    };
    Profile {
        user: from.id,
        username: from.username.as_deref().map(|u| cut(u, rei_core::members::USERNAME_BYTES_MAX)),
        first_name: cut(&from.first_name, rei_core::members::FIRST_NAME_BYTES_MAX),
        language: from.language_code.as_deref().map(|l| cut(l, rei_core::members::LANGUAGE_BYTES_MAX)),
    }
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> UpdateError {
    UpdateError::Unavailable(e.to_string())
}

/// The lock of a poisoned mutex is still good: the maps it guards hold no invariant across a panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
