//! The account's flows: `/start` (trial, referral), `/balance`, `/topup` by card or Stars, `/history`, `/lang`,
//! `/promo`.

use rei_adapters::telegram::{Button, Keyboard};
use rei_core::ledger::{Account, OpKind};
use rei_core::members::{GrowthError, PromoError};
use rei_core::money::Money;
use rei_core::stars::StarsApi;
use rei_http::webhooks::UpdateError;

use crate::i18n::{self, ButtonText, HistoryKind, HistoryLine, Lang, Text};
use crate::keys::{Action, MenuItem};
use crate::{Bot, Ctx, callback, profile, unavailable};

/// `/start [ref_<code>]`: joins (the trial once, the referral if the link names another member), greets with
/// the balance and the menu, and tells the referrer.
pub(crate) async fn start(bot: &Bot, ctx: &Ctx, args: &str) -> Result<(), UpdateError> {
    let started = match &ctx.started {
        Some(started) => started.clone(),
        None => bot.parts.growth.start(&profile(&ctx.from), referral(args)).await.map_err(unavailable)?,
    };
    if let Some(amount) = started.trial {
        ctx.say(bot, Text::TrialGranted { amount }, None).await?;
    }
    if started.created
        && let Some(referrer) = started.member.referrer
    {
        let bonus = started.referrer_bonus.map(|(_, bonus)| bonus);
        let lang = bot.lang_of(referrer).await;
        bot.send_quietly(referrer.0, &i18n::text(lang, &Text::ReferralJoined { bonus }), None).await;
    }
    let balance = bot.parts.engine.billing().balance(ctx.user).await.map_err(unavailable)?;
    let name = started.member.first_name.clone();
    ctx.say(bot, Text::Welcome { name: &name, balance: balance.available }, Some(bot.menu(ctx.lang))).await
}

/// The referral code of a `/start` payload (`ref_<code>`), if it carries one.
pub(crate) fn referral(args: &str) -> Option<&str> {
    args.split_whitespace().next()?.strip_prefix("ref_").filter(|c| !c.is_empty())
}

/// `/balance`: available and held, the referral link and how many joined by it.
pub(crate) async fn balance(bot: &Bot, ctx: &Ctx) -> Result<(), UpdateError> {
    let balance = bot.parts.engine.billing().balance(ctx.user).await.map_err(unavailable)?;
    let referees = bot.parts.growth.members().referee_count(ctx.user).await.map_err(unavailable)?;
    let link = bot.referral_link(&ctx.member);
    let keyboard = Keyboard { rows: vec![vec![callback(ctx.lang, ButtonText::TopUp, &Action::Menu(MenuItem::TopUp))]] };
    let text = Text::Balance { available: balance.available, held: balance.held, referral_link: &link, referees };
    ctx.say(bot, text, Some(keyboard)).await
}

/// The keyboard of the top-up amounts: a row of card amounts and a row of Stars, each when configured.
pub(crate) fn topup_keyboard(bot: &Bot, lang: Lang) -> Keyboard {
    let mut rows = Vec::new();
    if bot.parts.topups.is_some() {
        rows.push(
            bot.config.card_amounts.iter().map(|a| callback(lang, ButtonText::Card(*a), &Action::Card(*a))).collect(),
        );
    }
    if bot.parts.stars.is_some() {
        rows.push(
            bot.config.star_amounts.iter().map(|s| callback(lang, ButtonText::Stars(*s), &Action::Stars(*s))).collect(),
        );
    }
    Keyboard { rows }
}

/// `/topup`: the amounts, or that no way of paying is configured.
pub(crate) async fn topup_menu(bot: &Bot, ctx: &Ctx) -> Result<(), UpdateError> {
    if bot.parts.topups.is_none() && bot.parts.stars.is_none() {
        return ctx.say(bot, Text::TopUpUnavailable, None).await;
    }
    ctx.say(bot, Text::TopUpChoose, Some(topup_keyboard(bot, ctx.lang))).await
}

/// The top-up id of a button press: the update's id, so that a redelivered press is the same payment.
fn topup_id(ctx: &Ctx) -> String {
    format!("tg-{}-{}", ctx.user, ctx.update_id)
}

/// A card amount pressed: a YooKassa payment and its link.
pub(crate) async fn topup_card(bot: &Bot, ctx: &Ctx, query: &str, amount: Money) -> Result<(), UpdateError> {
    bot.answer(query, None).await;
    let Some(topups) = &bot.parts.topups else { return ctx.say(bot, Text::TopUpUnavailable, None).await };
    if !bot.config.card_amounts.contains(&amount) {
        return ctx.say(bot, Text::QuoteGone, None).await;
    }
    let description = i18n::text(ctx.lang, &Text::TopUpLink { amount });
    let created = topups.create(ctx.user, &topup_id(ctx), amount, &description, &bot.config.return_url).await;
    match created {
        Ok(payment) => match payment.confirmation_url {
            Some(url) => {
                let pay = Button::Url { text: i18n::button(ctx.lang, ButtonText::Pay), url };
                ctx.say(bot, Text::TopUpLink { amount }, Some(Keyboard { rows: vec![vec![pay]] })).await
            }
            None => {
                tracing::error!(user = %ctx.user, payment = %payment.id, "the gateway gave no confirmation link");
                ctx.say(bot, Text::TopUpFailed, None).await
            }
        },
        Err(e) => {
            tracing::warn!(user = %ctx.user, error = %e, "could not create a card top-up");
            ctx.say(bot, Text::TopUpFailed, None).await
        }
    }
}

/// A Stars amount pressed: an invoice in the chat.
pub(crate) async fn topup_stars(bot: &Bot, ctx: &Ctx, query: &str, stars: u32) -> Result<(), UpdateError> {
    bot.answer(query, None).await;
    let Some(hook) = &bot.parts.stars else { return ctx.say(bot, Text::TopUpUnavailable, None).await };
    if !bot.config.star_amounts.contains(&stars) {
        return ctx.say(bot, Text::QuoteGone, None).await;
    }
    let (invoice, amount) =
        match (hook.payments.invoice(ctx.user, stars, &topup_id(ctx)), hook.payments.config().amount_for(stars)) {
            (Ok(invoice), Some(amount)) => (invoice, amount),
            (Err(e), _) => {
                tracing::error!(user = %ctx.user, error = %e, "a Stars invoice was refused");
                return ctx.say(bot, Text::TopUpUnavailable, None).await;
            }
            (Ok(_), None) => return ctx.say(bot, Text::TopUpUnavailable, None).await,
        };
    match hook.api.send_invoice(ctx.chat, &invoice).await {
        Ok(()) => ctx.say(bot, Text::TopUpStarsSent { stars, amount }, None).await,
        Err(e) => {
            tracing::warn!(user = %ctx.user, error = %e, "could not send a Stars invoice");
            ctx.say(bot, Text::TopUpFailed, None).await
        }
    }
}

/// `/history` (or its "older" button): a page of the ledger, newest first, with a button for the next page.
pub(crate) async fn history(bot: &Bot, ctx: &Ctx, before: Option<u64>, query: Option<&str>) -> Result<(), UpdateError> {
    if let Some(q) = query {
        bot.answer(q, None).await;
    }
    let page = bot.config.history_page;
    let entries = bot.parts.engine.ledger().history(ctx.user, before, page + 1).await.map_err(unavailable)?;
    if entries.is_empty() {
        return ctx.say(bot, Text::HistoryEmpty, None).await;
    }
    let more = entries.len() > page;
    let shown = &entries[..entries.len().min(page)];
    let lines: Vec<HistoryLine> = shown
        .iter()
        .map(|e| {
            let tx = &e.transaction;
            let available: i64 = tx
                .postings
                .iter()
                .filter(|p| p.account == Account::Available(ctx.user))
                .map(|p| p.amount.kopecks())
                .sum();
            let held: i64 =
                tx.postings.iter().filter(|p| p.account == Account::Held(ctx.user)).map(|p| p.amount.kopecks()).sum();
            // A capture moves held money out: it is what the user paid.
            let amount = if tx.kind == OpKind::Capture { -held.abs() } else { available };
            HistoryLine {
                when: bot.local_time(tx.at),
                kind: history_kind(tx.kind),
                amount: Money::from_kopecks(amount),
            }
        })
        .collect();
    let keyboard = match (more, shown.last()) {
        (true, Some(last)) => {
            Some(Keyboard { rows: vec![vec![callback(ctx.lang, ButtonText::Older, &Action::History(last.position))]] })
        }
        _ => None,
    };
    ctx.say(bot, Text::History { lines: &lines }, keyboard).await
}

fn history_kind(kind: OpKind) -> HistoryKind {
    match kind {
        OpKind::TopUp => HistoryKind::TopUp,
        OpKind::Hold | OpKind::Raise => HistoryKind::Hold,
        OpKind::Capture => HistoryKind::Charge,
        OpKind::Release | OpKind::Expire => HistoryKind::Release,
        OpKind::Refund => HistoryKind::Refund,
        OpKind::RefundToCard => HistoryKind::CardRefund,
        OpKind::Adjust => HistoryKind::Adjust,
    }
}

/// `/lang`: the languages.
pub(crate) async fn lang_menu(bot: &Bot, ctx: &Ctx) -> Result<(), UpdateError> {
    let names = |l: Lang| match l {
        Lang::Ru => "🇷🇺 Русский",
        Lang::En => "🇬🇧 English",
    };
    let row = Lang::ALL
        .iter()
        .map(|l| Button::Callback { text: names(*l).to_owned(), data: Action::Lang(l.code().to_owned()).encode() })
        .collect();
    ctx.say(bot, Text::LangChoose, Some(Keyboard { rows: vec![row] })).await
}

/// A language picked: kept, and said in it.
pub(crate) async fn set_lang(bot: &Bot, ctx: &Ctx, query: &str, code: &str) -> Result<(), UpdateError> {
    bot.answer(query, None).await;
    let Some(lang) = Lang::ALL.into_iter().find(|l| l.code() == code) else {
        return ctx.say(bot, Text::QuoteGone, None).await;
    };
    bot.parts.growth.members().set_language(ctx.user, lang.code()).await.map_err(unavailable)?;
    let text = i18n::text(lang, &Text::LangSet);
    bot.send(ctx, &text, Some(&bot.menu(lang))).await.map(drop)
}

/// `/promo CODE`: the code's grant, once per user.
pub(crate) async fn promo(bot: &Bot, ctx: &Ctx, args: &str) -> Result<(), UpdateError> {
    let code = args.split_whitespace().next().unwrap_or("");
    if code.is_empty() {
        return ctx.say(bot, Text::PromoUsage, None).await;
    }
    match bot.parts.growth.redeem(ctx.user, code).await {
        Ok(redeemed) if redeemed.first => ctx.say(bot, Text::PromoRedeemed { amount: redeemed.amount }, None).await,
        Ok(_) => ctx.say(bot, Text::PromoAgain, None).await,
        Err(GrowthError::Promo(PromoError::Unknown | PromoError::Invalid(_))) => {
            ctx.say(bot, Text::PromoUnknown, None).await
        }
        Err(GrowthError::Promo(PromoError::Expired)) => ctx.say(bot, Text::PromoExpired, None).await,
        Err(GrowthError::Promo(PromoError::Exhausted)) => ctx.say(bot, Text::PromoExhausted, None).await,
        Err(e) => Err(unavailable(e)),
    }
}
