//! Every text the bot shows, in one catalogue per language (`i18n/ru.rs`, `i18n/en.rs`): the flows name a
//! [`Text`] and never hold a literal, so a language is added by adding one file and a tested catalogue cannot
//! miss a message.
//!
//! A user's language comes from Telegram's `language_code` (Russian for `ru`, `uk`, `be`, `kk` and for no code at
//! all; English otherwise) until they choose one with `/lang`.

mod en;
mod ru;

use rei_core::money::Money;

/// A language the bot speaks.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Lang {
    /// Русский: the default.
    Ru,
    /// English.
    En,
}

impl Lang {
    /// Every language, in the order `/lang` offers them.
    pub const ALL: [Lang; 2] = [Lang::Ru, Lang::En];

    /// The language for Telegram's `language_code` (an IETF tag such as `en-GB`), or for a stored choice.
    #[must_use]
    pub fn from_code(code: Option<&str>) -> Lang {
        let primary = code.unwrap_or("ru").split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
        match primary.as_str() {
            "ru" | "uk" | "be" | "kk" | "" => Lang::Ru,
            _ => Lang::En,
        }
    }

    /// The code stored for the language.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Lang::Ru => "ru",
            Lang::En => "en",
        }
    }
}

/// One line of a price breakdown.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BreakdownLine {
    /// What the line is.
    pub what: BreakdownItem,
    /// Its amount, rounded to kopecks for display (the exact figures stay in the quote).
    pub amount: Money,
}

/// The kinds of breakdown lines.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BreakdownItem {
    /// The provider's cost.
    Cost,
    /// The service's margin.
    Margin,
    /// The peak or off-peak adjustment.
    Time,
    /// The tier's discount (shown negative).
    Discount,
}

/// One ledger transaction in `/history`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct HistoryLine {
    /// `YYYY-MM-DD HH:MM` in the bot's time zone.
    pub when: String,
    /// What happened.
    pub kind: HistoryKind,
    /// The change of the user's available balance (signed).
    pub amount: Money,
}

/// What a history line is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HistoryKind {
    /// A top-up.
    TopUp,
    /// Money held for a generation.
    Hold,
    /// A generation paid for.
    Charge,
    /// Held money given back.
    Release,
    /// A refund of a paid generation.
    Refund,
    /// Money paid back to a card.
    CardRefund,
    /// A grant or an admin adjustment.
    Adjust,
}

/// A job in `/admin_jobs`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct JobLine {
    /// Its id.
    pub id: String,
    /// Whose.
    pub user: i64,
    /// What it makes.
    pub product: String,
    /// Its price.
    pub price: Money,
    /// Minutes since it was created.
    pub minutes: u64,
}

/// An objective in `/admin_slo`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SloLine {
    /// Its name.
    pub name: String,
    /// Good events over the longest window.
    pub good: u64,
    /// All events over it.
    pub total: u64,
    /// The alerts firing, by severity (empty: none).
    pub alerts: String,
}

/// What a broadcast goes to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AudienceName {
    /// Everyone.
    All,
    /// Seen in the last 7 days.
    Active7,
    /// Seen in the last 30 days.
    Active30,
    /// Paid at least once.
    Paid,
}

/// Every text of the bot, with its arguments.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Text<'a> {
    /// `/start`: the greeting, the balance and the menu.
    Welcome {
        /// The user's first name.
        name: &'a str,
        /// Their balance.
        balance: Money,
    },
    /// A trial grant on the first start.
    TrialGranted {
        /// How much.
        amount: Money,
    },
    /// To a referrer: someone joined by their link.
    ReferralJoined {
        /// The bonus, if any.
        bonus: Option<Money>,
    },
    /// To a referrer: a share of a referee's top-up.
    ReferralTopUp {
        /// The bonus.
        bonus: Money,
    },
    /// `/balance`.
    Balance {
        /// Spendable.
        available: Money,
        /// Held for jobs running.
        held: Money,
        /// The user's referral link.
        referral_link: &'a str,
        /// How many joined by it.
        referees: u64,
    },
    /// `/topup`: pick an amount.
    TopUpChoose,
    /// A payment link was made.
    TopUpLink {
        /// The amount.
        amount: Money,
    },
    /// A Stars invoice was sent.
    TopUpStarsSent {
        /// Stars.
        stars: u32,
        /// Roubles they bring.
        amount: Money,
    },
    /// A Stars payment was credited.
    StarsCredited {
        /// Roubles credited.
        amount: Money,
        /// Stars paid.
        stars: u32,
    },
    /// A card payment was credited.
    CardCredited {
        /// Roubles credited.
        amount: Money,
    },
    /// No payment method is configured for the asked one.
    TopUpUnavailable,
    /// The payment service failed.
    TopUpFailed,
    /// `/history` with no entries.
    HistoryEmpty,
    /// A page of `/history`.
    History {
        /// The lines, newest first.
        lines: &'a [HistoryLine],
    },
    /// `/lang`: pick one.
    LangChoose,
    /// The language was switched.
    LangSet,
    /// `/help`.
    Help,
    /// The short help for content the bot does not take.
    ShortHelp,
    /// A price quote.
    Quote {
        /// What is made (`Nano Banana`, `Kling 2.6 · 5 s`).
        what: &'a str,
        /// Generation or editing, image or video.
        mode: QuoteMode,
        /// The price.
        price: Money,
        /// How the price was reached.
        breakdown: &'a [BreakdownLine],
        /// Minutes the price is held.
        minutes: u64,
    },
    /// The confirmed job is running.
    Working,
    /// The result's caption.
    Delivered,
    /// The job failed; the money is back.
    Failed {
        /// Why, for the user.
        reason: &'a str,
    },
    /// The job was cancelled; the money is back.
    JobCancelled,
    /// The quote was cancelled before it was confirmed.
    QuoteCancelled,
    /// The button's quote is gone (answered already, or lost).
    QuoteGone,
    /// The quote's price expired.
    QuoteExpired,
    /// The quote was confirmed before (a second press).
    AlreadyConfirmed,
    /// Not enough money.
    NotEnough {
        /// Spendable.
        available: Money,
        /// Needed.
        required: Money,
    },
    /// A spend cap would be passed.
    CapReached {
        /// Hourly or daily.
        daily: bool,
        /// The cap.
        cap: Money,
    },
    /// Too many jobs running at once.
    TooManyJobs {
        /// The limit.
        max: u32,
    },
    /// Too many messages in a short time.
    RateLimited {
        /// Seconds to wait.
        seconds: u64,
    },
    /// Something on our side failed; nothing was charged.
    TryLater,
    /// The message is too long.
    TooLong {
        /// The limit, in characters.
        max: usize,
    },
    /// A file over the download limit.
    FileTooBig {
        /// The limit, in MB.
        max_mb: u64,
    },
    /// A document that is not an image.
    NotAnImage,
    /// `/video`: pick a model.
    VideoModel,
    /// Pick a duration.
    VideoDuration {
        /// The model's name.
        model: &'a str,
    },
    /// Send the prompt, a photo or a video.
    VideoPrompt {
        /// The model's name.
        model: &'a str,
        /// Seconds.
        seconds: u32,
    },
    /// A video was sent that the bot cannot continue.
    VideoInputUnknown,
    /// `/promo` without a code.
    PromoUsage,
    /// A promo code was redeemed.
    PromoRedeemed {
        /// How much.
        amount: Money,
    },
    /// This user redeemed it before.
    PromoAgain,
    /// No such code.
    PromoUnknown,
    /// The code expired.
    PromoExpired,
    /// Every use was taken.
    PromoExhausted,
    /// A non-admin used an admin command.
    NotAdmin,
    /// An admin command's usage.
    AdminUsage {
        /// The usage line.
        usage: &'a str,
    },
    /// An admin action was done.
    AdminDone {
        /// What was done, in the operator's words.
        what: &'a str,
    },
    /// An admin action failed.
    AdminFailed {
        /// Why.
        why: &'a str,
    },
    /// A broadcast's preview.
    BroadcastPreview {
        /// Who gets it.
        audience: AudienceName,
    },
    /// A broadcast's progress or end.
    BroadcastProgress {
        /// Sent.
        sent: u64,
        /// Failed.
        failed: u64,
        /// Blocked the bot.
        blocked: u64,
        /// Whether it ended.
        done: bool,
        /// Whether it was cancelled.
        cancelled: bool,
    },
    /// A photo without a caption.
    PhotoNeedsCaption,
    /// An admin named a user who is not known.
    UserNotFound,
    /// A balance adjusted.
    AdminAdjusted {
        /// Whose.
        user: i64,
        /// By how much (signed).
        amount: Money,
        /// The balance now.
        balance: Money,
    },
    /// A paid job refunded.
    AdminRefunded {
        /// The job.
        job: &'a str,
        /// How much.
        amount: Money,
    },
    /// A job cancelled and its money released.
    AdminJobCancelled {
        /// The job.
        job: &'a str,
    },
    /// Jobs in a state.
    AdminJobs {
        /// The state.
        state: &'a str,
        /// The jobs, at most 20.
        lines: &'a [JobLine],
    },
    /// A user banned.
    AdminBanned {
        /// Whom.
        user: i64,
        /// Until when (`None`: for ever).
        until: Option<&'a str>,
    },
    /// A ban lifted.
    AdminUnbanned {
        /// Whose.
        user: i64,
    },
    /// A user's card.
    AdminUser {
        /// The id.
        user: i64,
        /// `@username`.
        username: Option<&'a str>,
        /// First name.
        name: &'a str,
        /// Language.
        language: &'a str,
        /// Joined at.
        joined: &'a str,
        /// Last seen at.
        seen: &'a str,
        /// Available.
        available: Money,
        /// Held.
        held: Money,
        /// Who invited them.
        referrer: Option<i64>,
        /// How many they invited.
        referees: u64,
        /// Paid at least once.
        paid: bool,
        /// Banned now.
        banned: bool,
        /// Their referral code.
        code: &'a str,
    },
    /// The ledger's verification.
    AdminVerify {
        /// Nothing wrong.
        clean: bool,
        /// Transactions checked.
        transactions: u64,
        /// Cached balances that drifted.
        drifts: usize,
        /// Unbalanced transactions.
        unbalanced: usize,
        /// Balances below their floor.
        below_floor: usize,
        /// The sum of all accounts (zero when sound).
        total: Money,
    },
    /// The objectives.
    AdminSlo {
        /// One per objective.
        lines: &'a [SloLine],
    },
    /// The last day's figures.
    AdminStats {
        /// Members.
        members: &'a rei_core::members::MemberStats,
        /// Jobs created in the last day, by state.
        jobs: &'a rei_core::reports::JobCounts,
        /// Money in the last day.
        money: &'a rei_core::reports::MoneyFlow,
        /// Held now.
        held: Money,
    },
    /// A promo code made.
    AdminPromo {
        /// The code.
        code: &'a str,
        /// Its grant.
        amount: Money,
        /// Its uses.
        uses: u32,
    },
    /// Send the broadcast's text or photo.
    BroadcastAsk,
    /// The broadcast draft was dropped.
    BroadcastDropped,
    /// A button label.
    Button(ButtonText),
}

/// What a quote makes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum QuoteMode {
    /// An image from text.
    Generate,
    /// An edit of the photo sent.
    Edit,
    /// A video from text.
    VideoText,
    /// A video from the photo sent.
    VideoImage,
    /// A continuation of a video.
    VideoVideo,
}

/// The labels of the buttons.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ButtonText {
    /// Generate an image.
    Image,
    /// Make a video.
    Video,
    /// The balance.
    Balance,
    /// Top up.
    TopUp,
    /// History.
    History,
    /// Language.
    Language,
    /// Help.
    Help,
    /// Confirm at a price.
    Confirm(Money),
    /// Cancel.
    Cancel,
    /// Pay by card an amount.
    Card(Money),
    /// Pay in Stars.
    Stars(u32),
    /// Open the payment page.
    Pay,
    /// An older history page.
    Older,
    /// Send the broadcast.
    Send,
    /// Stop the broadcast.
    Stop,
    /// A duration.
    Seconds(u32),
}

/// The text of `text` in `lang`.
#[must_use]
pub fn text(lang: Lang, text: &Text<'_>) -> String {
    match lang {
        Lang::Ru => ru::text(text),
        Lang::En => en::text(text),
    }
}

/// A button label in `lang`.
#[must_use]
pub fn button(lang: Lang, label: ButtonText) -> String {
    text(lang, &Text::Button(label))
}

/// `amount` as roubles for people: `12.50 ₽`.
pub(crate) fn rub(amount: Money) -> String {
    format!("{amount} ₽")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_follow_telegram_codes() {
        // Proves the mapping of language codes: Russian for the CIS codes and none, English for the rest.
        assert_eq!(Lang::from_code(None), Lang::Ru);
        assert_eq!(Lang::from_code(Some("ru")), Lang::Ru);
        assert_eq!(Lang::from_code(Some("uk")), Lang::Ru);
        assert_eq!(Lang::from_code(Some("en-GB")), Lang::En);
        assert_eq!(Lang::from_code(Some("de")), Lang::En);
        assert_eq!(Lang::from_code(Some("EN")), Lang::En);
        for lang in Lang::ALL {
            assert_eq!(Lang::from_code(Some(lang.code())), lang);
        }
    }

    #[test]
    fn both_catalogues_differ_and_fill_every_argument() {
        // Proves that each language renders its own text (no English left in Russian, no placeholder left), for a
        // sample of every shape of argument.
        let lines = [BreakdownLine { what: BreakdownItem::Cost, amount: Money::from_kopecks(320) }];
        let history = [HistoryLine {
            when: "2026-01-02 10:00".into(),
            kind: HistoryKind::TopUp,
            amount: Money::from_kopecks(10_000),
        }];
        let samples = [
            Text::Welcome { name: "Ann", balance: Money::from_kopecks(1_000) },
            Text::Balance {
                available: Money::from_kopecks(1),
                held: Money::from_kopecks(2),
                referral_link: "https://t.me/b?start=ref_x",
                referees: 3,
            },
            Text::Quote {
                what: "Nano Banana",
                mode: QuoteMode::Edit,
                price: Money::from_kopecks(640),
                breakdown: &lines,
                minutes: 10,
            },
            Text::History { lines: &history },
            Text::NotEnough { available: Money::from_kopecks(100), required: Money::from_kopecks(640) },
            Text::BroadcastProgress { sent: 1, failed: 2, blocked: 3, done: true, cancelled: false },
            Text::Help,
        ];
        for sample in &samples {
            let (ru, en) = (text(Lang::Ru, sample), text(Lang::En, sample));
            assert_ne!(ru, en, "{sample:?}");
            for rendered in [&ru, &en] {
                assert!(!rendered.contains('{') && !rendered.is_empty(), "{rendered}");
            }
            assert!(ru.chars().any(|c| ('а'..='я').contains(&c.to_lowercase().next().unwrap_or(c))), "{ru}");
        }
    }
}
