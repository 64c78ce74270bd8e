//! Broadcasts: `/broadcast <audience> [button]`, then the text or photo, a preview with Send / Stop, and the
//! sending itself under the Bot API client's send limits, with a progress message, cancellable, counting the
//! sent, the failed and those who blocked the bot (marked so, and left out of the next one).
//!
//! A broadcast runs in the process that took the Send press; if that process ends, the broadcast ends with it
//! (the progress message shows how far it got) rather than being resumed and doubled.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rei_adapters::telegram::{Button, Keyboard, Media};
use rei_core::ids::UserId;
use rei_core::members::Audience;
use rei_http::webhooks::UpdateError;

use crate::admin::Outcome;
use crate::i18n::{self, AudienceName, ButtonText, Text};
use crate::keys::Action;
use crate::state::BroadcastDraft;
use crate::{Bot, Ctx, callback, lock};

/// Users asked per page of the audience.
const PAGE: u32 = 200;

fn audience_name(text: &str) -> Option<AudienceName> {
    match text {
        "all" => Some(AudienceName::All),
        "active7" => Some(AudienceName::Active7),
        "active30" => Some(AudienceName::Active30),
        "paid" => Some(AudienceName::Paid),
        _ => None,
    }
}

/// `/broadcast <audience> [label | https://link]`: starts a draft; the next text or photo is its content.
pub(crate) async fn begin(bot: &Bot, ctx: &Ctx, args: &str) -> Result<(), Outcome> {
    let (audience, rest) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
    if audience_name(audience).is_none() {
        return Err(Outcome::Usage);
    }
    let button = match rest.trim() {
        "" => None,
        rest => {
            let (label, url) = rest.rsplit_once('|').ok_or(Outcome::Usage)?;
            let (label, url) = (label.trim(), url.trim());
            let url_ok = url.starts_with("https://") && url.len() <= 512 && !url.contains(char::is_whitespace);
            if label.is_empty() || label.chars().count() > 64 || !url_ok {
                return Err(Outcome::Usage);
            }
            Some((label.to_owned(), url.to_owned()))
        }
    };
    let mut state = bot.load_state(ctx.user).await?;
    state.broadcast = Some(BroadcastDraft { audience: audience.to_owned(), text: String::new(), photo: None, button });
    bot.save_state(ctx.user, &state).await?;
    ctx.say(bot, Text::BroadcastAsk, None).await.map_err(Outcome::from)
}

/// `true` when an admin's next message is a broadcast's content.
pub(crate) async fn drafting(bot: &Bot, ctx: &Ctx) -> Result<bool, UpdateError> {
    if ctx.role == rei_core::guards::Role::User {
        return Ok(false);
    }
    let state = bot.load_state(ctx.user).await?;
    Ok(state.broadcast.is_some_and(|d| d.text.is_empty() && d.photo.is_none()))
}

fn button_keyboard(draft: &BroadcastDraft) -> Option<Keyboard> {
    draft
        .button
        .as_ref()
        .map(|(text, url)| Keyboard { rows: vec![vec![Button::Url { text: text.clone(), url: url.clone() }]] })
}

/// The content arrived: kept, and previewed to the admin exactly as users will see it, with Send / Stop.
pub(crate) async fn draft_content(bot: &Bot, ctx: &Ctx, text: &str, photo: Option<String>) -> Result<(), UpdateError> {
    let limit = if photo.is_some() { 1_024 } else { 4_096 };
    if text.chars().count() > limit || (photo.is_none() && text.trim().is_empty()) {
        return ctx.say(bot, Text::TooLong { max: limit }, None).await;
    }
    let mut state = bot.load_state(ctx.user).await?;
    let Some(draft) = state.broadcast.as_mut() else { return Ok(()) };
    draft.text = text.to_owned();
    draft.photo = photo;
    let draft = draft.clone();
    bot.save_state(ctx.user, &state).await?;
    if let Err(e) = deliver(bot, ctx.chat, &draft).await {
        tracing::warn!(error = %e, "the broadcast preview could not be sent");
    }
    let audience = audience_name(&draft.audience).unwrap_or(AudienceName::All);
    let keyboard = Keyboard {
        rows: vec![vec![
            callback(ctx.lang, ButtonText::Send, &Action::BroadcastSend),
            callback(ctx.lang, ButtonText::Stop, &Action::BroadcastStop),
        ]],
    };
    ctx.say(bot, Text::BroadcastPreview { audience }, Some(keyboard)).await
}

/// Sends the draft to one chat.
async fn deliver(bot: &Bot, chat: i64, draft: &BroadcastDraft) -> Result<(), rei_adapters::telegram::BotApiError> {
    let keyboard = button_keyboard(draft);
    let api = &bot.parts.api;
    match &draft.photo {
        Some(photo) => {
            let caption = Some(draft.text.as_str()).filter(|t| !t.is_empty());
            api.send_photo(chat, &Media::FileId(photo.clone()), caption, keyboard.as_ref()).await.map(drop)
        }
        None => api.send_message(chat, &draft.text, keyboard.as_ref()).await.map(drop),
    }
}

/// Send pressed: the draft taken (a second press finds none) and sent in the background.
pub(crate) async fn send(bot: &Bot, ctx: &Ctx, query: &str) -> Result<(), UpdateError> {
    bot.answer(query, None).await;
    if ctx.role == rei_core::guards::Role::User {
        return ctx.say(bot, Text::NotAdmin, None).await;
    }
    let mut state = bot.load_state(ctx.user).await?;
    let Some(draft) = state.broadcast.take().filter(|d| !d.text.is_empty() || d.photo.is_some()) else {
        return ctx.say(bot, Text::QuoteGone, None).await;
    };
    bot.save_state(ctx.user, &state).await?;
    let Some(me) = bot.me.upgrade() else { return Ok(()) };
    let stop = Arc::new(AtomicBool::new(false));
    lock(&bot.broadcasts).insert(ctx.user, stop.clone());
    let (admin, chat, lang) = (ctx.user, ctx.chat, ctx.lang);
    let progress = Tally::default();
    let keyboard = Keyboard { rows: vec![vec![callback(lang, ButtonText::Stop, &Action::BroadcastStop)]] };
    let first = i18n::text(lang, &progress.text(false, false));
    let message = bot.parts.api.send_message(chat, &first, Some(&keyboard)).await.ok().map(|s| s.message_id);
    tracing::info!(admin = %admin, audience = draft.audience, "broadcast started");
    tokio::spawn(async move {
        let tally = run(&me, &draft, &stop, chat, message, lang).await;
        lock(&me.broadcasts).remove(&admin);
        tracing::info!(admin = %admin, sent = tally.sent, failed = tally.failed, blocked = tally.blocked,
            cancelled = tally.cancelled, "broadcast ended");
    });
    Ok(())
}

/// What a broadcast did.
#[derive(Clone, Copy, Default, Debug)]
struct Tally {
    sent: u64,
    failed: u64,
    blocked: u64,
    cancelled: bool,
}

impl Tally {
    fn text(&self, done: bool, cancelled: bool) -> Text<'static> {
        Text::BroadcastProgress { sent: self.sent, failed: self.failed, blocked: self.blocked, done, cancelled }
    }
}

async fn run(
    bot: &Bot,
    draft: &BroadcastDraft,
    stop: &AtomicBool,
    chat: i64,
    message: Option<i64>,
    lang: i18n::Lang,
) -> Tally {
    let members = bot.parts.growth.members();
    let now = bot.now();
    let audience = match draft.audience.as_str() {
        "active7" => Audience::ActiveSince(now.minus(Duration::from_secs(7 * 86_400))),
        "active30" => Audience::ActiveSince(now.minus(Duration::from_secs(30 * 86_400))),
        "paid" => Audience::Paid,
        _ => Audience::All,
    };
    let mut tally = Tally::default();
    let mut after: Option<UserId> = None;
    let mut shown = Instant::now();
    let keyboard = Keyboard { rows: vec![vec![callback(lang, ButtonText::Stop, &Action::BroadcastStop)]] };
    'pages: loop {
        let page = match members.audience(&audience, after, PAGE, bot.now()).await {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(error = %e, "a broadcast could not read its audience: stopped");
                break;
            }
        };
        let Some(last) = page.last() else { break };
        after = Some(*last);
        for user in page {
            if stop.load(Ordering::Relaxed) {
                tally.cancelled = true;
                break 'pages;
            }
            match deliver(bot, user.0, draft).await {
                Ok(()) => tally.sent += 1,
                Err(e) if e.is_blocked() => {
                    tally.blocked += 1;
                    if let Err(e) = members.mark_blocked(user, bot.now()).await {
                        tracing::warn!(error = %e, "could not mark a user who blocked the bot");
                    }
                }
                Err(e) => {
                    tally.failed += 1;
                    tracing::debug!(user = %user, error = %e, "a broadcast message failed");
                }
            }
            if shown.elapsed() >= bot.config.progress_every
                && let Some(id) = message
            {
                shown = Instant::now();
                let text = i18n::text(lang, &tally.text(false, false));
                let _ = bot.parts.api.edit_message_text(chat, id, &text, Some(&keyboard)).await;
            }
        }
    }
    let text = i18n::text(lang, &tally.text(true, tally.cancelled));
    match message {
        Some(id) => {
            let _ = bot.parts.api.edit_message_text(chat, id, &text, None).await;
        }
        None => bot.send_quietly(chat, &text, None).await,
    }
    tally
}

/// Stop pressed: the running broadcast stops after the message in flight, or the draft is dropped.
pub(crate) async fn stop(bot: &Bot, ctx: &Ctx, query: &str) -> Result<(), UpdateError> {
    bot.answer(query, None).await;
    if ctx.role == rei_core::guards::Role::User {
        return ctx.say(bot, Text::NotAdmin, None).await;
    }
    if let Some(flag) = lock(&bot.broadcasts).get(&ctx.user) {
        flag.store(true, Ordering::Relaxed);
        return Ok(());
    }
    let mut state = bot.load_state(ctx.user).await?;
    if state.broadcast.take().is_some() {
        bot.save_state(ctx.user, &state).await?;
    }
    ctx.say(bot, Text::BroadcastDropped, None).await
}
