//! The English catalogue.

use std::fmt::Write as _;

use super::{AudienceName, BreakdownItem, ButtonText, HistoryKind, QuoteMode, Text, rub};

pub(super) fn text(text: &Text<'_>) -> String {
    match text {
        Text::Welcome { name, balance } => format!(
            "Hi, {name}! I draw pictures (Nano Banana) and make videos (Kling).\n\n\
             Write what to draw, or send a photo with a caption and I will edit it. For a video: /video.\n\n\
             Balance: {}",
            rub(*balance)
        ),
        Text::TrialGranted { amount } => format!("🎁 A welcome gift: {} on your balance.", rub(*amount)),
        Text::ReferralJoined { bonus: Some(bonus) } => {
            format!("🎉 Someone joined by your link. Your bonus: {}.", rub(*bonus))
        }
        Text::ReferralJoined { bonus: None } => "🎉 Someone joined by your link.".to_owned(),
        Text::ReferralTopUp { bonus } => format!("💸 Someone you invited topped up. Your bonus: {}.", rub(*bonus)),
        Text::Balance { available, held, referral_link, referees } => {
            let mut out = format!("💰 Balance: {}", rub(*available));
            if !held.is_zero() {
                let _ = write!(out, "\nHeld for running jobs: {}", rub(*held));
            }
            let _ = write!(out, "\n\nYour referral link: {referral_link}\nInvited: {referees}");
            out
        }
        Text::TopUpChoose => "Pick an amount: by card (YooKassa) or in Telegram Stars.".to_owned(),
        Text::TopUpLink { amount } => {
            format!("An invoice for {} is ready. Pay with the button; the balance tops up by itself.", rub(*amount))
        }
        Text::TopUpStarsSent { stars, amount } => format!("An invoice for {stars} ⭐ ({}) is sent.", rub(*amount)),
        Text::StarsCredited { amount, stars } => {
            format!("✅ Your balance is topped up by {} ({stars} ⭐).", rub(*amount))
        }
        Text::CardCredited { amount } => format!("✅ Your balance is topped up by {}.", rub(*amount)),
        Text::TopUpUnavailable => "This way of paying is not available now. Try the other one.".to_owned(),
        Text::TopUpFailed => {
            "The payment service did not answer. Nothing was charged: try again in a minute.".to_owned()
        }
        Text::HistoryEmpty => "Your history is empty: no operations yet.".to_owned(),
        Text::History { lines } => {
            let mut out = "📜 Operations (newest first):".to_owned();
            for line in *lines {
                let kind = match line.kind {
                    HistoryKind::TopUp => "top-up",
                    HistoryKind::Hold => "held",
                    HistoryKind::Charge => "generation paid",
                    HistoryKind::Release => "hold returned",
                    HistoryKind::Refund => "refund",
                    HistoryKind::CardRefund => "refund to card",
                    HistoryKind::Adjust => "credit",
                };
                let sign = if line.amount.is_negative() { "" } else { "+" };
                let _ = write!(out, "\n{} · {kind} · {sign}{}", line.when, rub(line.amount));
            }
            out
        }
        Text::LangChoose => "Выберите язык / Choose a language:".to_owned(),
        Text::LangSet => "Done: I speak English now.".to_owned(),
        Text::Help => "How to use me:\n\
             • write what to draw: I show the price and, once you confirm, send the picture;\n\
             • send a photo with a caption: I edit it;\n\
             • /video: a video from text or a photo (Kling 3.0, 2.6, 1.5; 5 or 10 seconds);\n\
             • /balance: balance and referral link, /topup: top up, /history: operations;\n\
             • /promo CODE: a promo code, /lang: language.\n\n\
             You pay only for a finished result; on a failure the held money comes back."
            .to_owned(),
        Text::ShortHelp => {
            "I understand text (what to draw), photos with a caption (what to change) and commands: /help.".to_owned()
        }
        Text::Quote { what, mode, price, breakdown, minutes } => {
            let mode = match mode {
                QuoteMode::Generate => "image generation",
                QuoteMode::Edit => "photo edit",
                QuoteMode::VideoText => "video from a description",
                QuoteMode::VideoImage => "video from a photo",
                QuoteMode::VideoVideo => "video continuation",
            };
            let mut out = format!("🧾 {what}: {mode}\nPrice: {}", rub(*price));
            for line in *breakdown {
                let name = match line.what {
                    BreakdownItem::Cost => "model cost",
                    BreakdownItem::Margin => "service",
                    BreakdownItem::Time => "time of day",
                    BreakdownItem::Discount => "discount",
                };
                let _ = write!(out, "\n  {name}: {}", rub(line.amount));
            }
            let _ = write!(out, "\nThe price holds for {minutes} min. You pay only for a finished result.");
            out
        }
        Text::Working => "⏳ Got it, working. I will send the result as soon as it is ready.".to_owned(),
        Text::Delivered => "✨ Done!".to_owned(),
        Text::Failed { reason } => format!("😔 That did not work: {reason}. The money is back on your balance."),
        Text::JobCancelled => "The job was cancelled; the money is back on your balance.".to_owned(),
        Text::QuoteCancelled => "Cancelled. Nothing was charged.".to_owned(),
        Text::QuoteGone => "This button no longer works. Send your request again.".to_owned(),
        Text::QuoteExpired => "The price expired. Send your request again and I will price it anew.".to_owned(),
        Text::AlreadyConfirmed => "Confirmed already: I am working on it.".to_owned(),
        Text::NotEnough { available, required } => {
            format!("Not enough money: {} needed, {} on your balance. Please top up.", rub(*required), rub(*available))
        }
        Text::CapReached { daily: true, cap } => {
            format!("You reached the daily spending limit ({}). It frees up within a day.", rub(*cap))
        }
        Text::CapReached { daily: false, cap } => {
            format!("You reached the hourly spending limit ({}). It frees up within an hour.", rub(*cap))
        }
        Text::TooManyJobs { max } => {
            format!("{max} of your jobs are running, the most at once. Wait for one to finish.")
        }
        Text::RateLimited { seconds } => format!("Too fast. Please wait {seconds} s."),
        Text::TryLater => "Something went wrong on our side. Nothing was charged: please try again.".to_owned(),
        Text::TooLong { max } => format!("The message is too long: at most {max} characters."),
        Text::FileTooBig { max_mb } => format!("The file is too big: at most {max_mb} MB."),
        Text::NotAnImage => "This file is not an image. Send a JPG, PNG or WEBP.".to_owned(),
        Text::VideoModel => "🎬 Pick a Kling model:".to_owned(),
        Text::VideoDuration { model } => format!("{model}: pick a duration."),
        Text::VideoPrompt { model, seconds } => format!(
            "{model}, {seconds} s. Send a description of the video, a photo (I bring it to life) or a video I made \
             before (I continue it)."
        ),
        Text::VideoInputUnknown => "I can only continue a video I made. Send a description or a photo.".to_owned(),
        Text::PromoUsage => "Send the code like this: /promo CODE".to_owned(),
        Text::PromoRedeemed { amount } => format!("🎁 Promo code accepted: {} on your balance.", rub(*amount)),
        Text::PromoAgain => "You used this promo code already.".to_owned(),
        Text::PromoUnknown => "There is no such promo code.".to_owned(),
        Text::PromoExpired => "This promo code has expired.".to_owned(),
        Text::PromoExhausted => "This promo code is used up.".to_owned(),
        Text::NotAdmin => "This command is for admins only.".to_owned(),
        Text::AdminUsage { usage } => format!("Usage: {usage}"),
        Text::AdminDone { what } => format!("✅ {what}"),
        Text::AdminFailed { why } => format!("❌ {why}"),
        Text::BroadcastPreview { audience } => {
            let who = match audience {
                AudienceName::All => "every user",
                AudienceName::Active7 => "users active in the last 7 days",
                AudienceName::Active30 => "users active in the last 30 days",
                AudienceName::Paid => "paying users",
            };
            format!("This is the broadcast to {who}. Send it?")
        }
        Text::BroadcastProgress { sent, failed, blocked, done, cancelled } => {
            let state = match (done, cancelled) {
                (_, true) => "Broadcast stopped",
                (true, false) => "Broadcast finished",
                (false, false) => "Broadcast running",
            };
            format!("📣 {state}: {sent} sent, {failed} failed, {blocked} blocked the bot.")
        }
        Text::PhotoNeedsCaption => "Add a caption to the photo: what to change in it.".to_owned(),
        Text::UserNotFound => "No such user.".to_owned(),
        Text::AdminAdjusted { user, amount, balance } => {
            format!("✅ {user}'s balance changed by {}. Now: {}.", rub(*amount), rub(*balance))
        }
        Text::AdminRefunded { job, amount } => format!("✅ Refunded {} for job {job}.", rub(*amount)),
        Text::AdminJobCancelled { job } => format!("✅ Job {job} cancelled, its hold released."),
        Text::AdminJobs { state, lines } => {
            let mut out = format!("Jobs ({state}): {}", lines.len());
            for l in *lines {
                let _ = write!(out, "\n{} · {} · {} · {} · {} min", l.id, l.user, l.product, rub(l.price), l.minutes);
            }
            out
        }
        Text::AdminBanned { user, until: Some(until) } => format!("✅ {user} banned until {until}."),
        Text::AdminBanned { user, until: None } => format!("✅ {user} banned for good."),
        Text::AdminUnbanned { user } => format!("✅ {user} unbanned."),
        Text::AdminUser {
            user,
            username,
            name,
            language,
            joined,
            seen,
            available,
            held,
            referrer,
            referees,
            paid,
            banned,
            code,
        } => {
            let mut out = format!("👤 {name} ({user}");
            if let Some(u) = username {
                let _ = write!(out, ", @{u}");
            }
            let _ = write!(
                out,
                ")\nLanguage: {language}\nJoined {joined}, last seen {seen}\nBalance: {}, held {}\n\
                 Referral code: {code}, invited: {referees}",
                rub(*available),
                rub(*held)
            );
            if let Some(r) = referrer {
                let _ = write!(out, "\nInvited by: {r}");
            }
            let _ = write!(out, "\nPaid: {}\nBanned: {}", yes(*paid), yes(*banned));
            out
        }
        Text::AdminVerify { clean, transactions, drifts, unbalanced, below_floor, total } => format!(
            "{} Ledger check: {transactions} transactions, {drifts} drifts, {unbalanced} unbalanced, \
             {below_floor} below the floor, accounts sum to {}.",
            if *clean { "✅" } else { "🚨" },
            rub(*total)
        ),
        Text::AdminSlo { lines } => {
            let mut out = "SLOs (3 days):".to_owned();
            for l in *lines {
                let alerts = if l.alerts.is_empty() { "no alerts".to_owned() } else { format!("alerts: {}", l.alerts) };
                let _ = write!(out, "\n{}: {} good of {}, {alerts}", l.name, l.good, l.total);
            }
            out
        }
        Text::AdminStats { members, jobs, money, held } => format!(
            "📊 Users: {} ({} new in a day), active 1/7/30 days: {}/{}/{}, paid {}, banned {}, blocked the bot {}\n\
             Last day: {} jobs done, {} failed, {} queued, {} running\n\
             Top-ups {} ({}), revenue {}, refunds {}, provider cost {}, margin {}\nHeld now: {}",
            members.total,
            members.joined_since_1d,
            members.active_1d,
            members.active_7d,
            members.active_30d,
            members.paid,
            members.banned,
            members.blocked,
            jobs.succeeded,
            jobs.failed,
            jobs.queued,
            jobs.running,
            rub(money.top_ups),
            money.top_up_count,
            rub(money.revenue),
            rub(money.refunds),
            rub(money.provider_cost),
            rub(money.margin()),
            rub(*held)
        ),
        Text::AdminPromo { code, amount, uses } => format!("✅ Promo code {code}: {} × {uses}.", rub(*amount)),
        Text::BroadcastAsk => "Send the broadcast's text, or a photo with a caption.".to_owned(),
        Text::BroadcastDropped => "The broadcast draft is dropped.".to_owned(),
        Text::Button(label) => button(*label),
    }
}

fn button(label: ButtonText) -> String {
    match label {
        ButtonText::Image => "🖼 Image".to_owned(),
        ButtonText::Video => "🎬 Video".to_owned(),
        ButtonText::Balance => "💰 Balance".to_owned(),
        ButtonText::TopUp => "➕ Top up".to_owned(),
        ButtonText::History => "📜 History".to_owned(),
        ButtonText::Language => "🌐 Language".to_owned(),
        ButtonText::Help => "❓ Help".to_owned(),
        ButtonText::Confirm(price) => format!("✅ Confirm · {}", rub(price)),
        ButtonText::Cancel => "❌ Cancel".to_owned(),
        ButtonText::Card(amount) => format!("💳 {}", rub(amount)),
        ButtonText::Stars(stars) => format!("⭐ {stars}"),
        ButtonText::Pay => "Pay".to_owned(),
        ButtonText::Older => "⬅️ Older".to_owned(),
        ButtonText::Send => "📣 Send".to_owned(),
        ButtonText::Stop => "⏹ Stop".to_owned(),
        ButtonText::Seconds(s) => format!("{s} s"),
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
