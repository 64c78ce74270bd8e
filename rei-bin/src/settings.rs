//! The settings file: prices, models and limits in one TOML file, `rei.toml`, whose shipped default is built into
//! the binary; and `.env`, read into the environment before the command line is.
//!
//! A file is read in two steps. Serde reads it into the [`raw`] structs, refusing unknown keys and naming the key
//! path of anything it cannot read; then each section becomes typed values (money through `Money::parse`,
//! never a float) and is validated, the core's own rules included (`PricingConfig::new`,
//! `StarsConfig::validate`). Every error names the file, the key and what is wrong:
//! `rei.toml: bot.videos[1].durations: 0 s is not a duration`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use jiff::civil::{Time, Weekday};
use rei_core::billing::BillingConfig;
use rei_core::caps::SpendCaps;
use rei_core::ids::{ProductId, ProviderId, QuoteId};
use rei_core::money::{Money, MoneyError, Ratio, UnitPrice};
use rei_core::pricing::{
    PeakWindow, Pricer, PricingConfig, PricingConfigError, PricingSpec, ProductPricing, QUOTE_TTL_MAX, Tier,
    TierDiscounts, UNIT_NAME_LEN_MAX, Weekdays,
};
use rei_core::stars::{DESCRIPTION_CHARS_MAX, RUB_PER_STAR_MAX, StarsConfig, StarsConfigError, TITLE_CHARS_MAX};
use rei_core::time::Timestamp;
use rust_decimal::Decimal;

mod raw;
#[cfg(test)]
mod tests;

use raw::{Amount, Number, RawBilling, RawBot, RawGrowth, RawPricing, RawSettings, RawStars};

/// The shipped default settings file.
pub(crate) const SHIPPED: &str = include_str!("../rei.toml");
/// What the shipped default is called in errors and summaries.
const SHIPPED_NAME: &str = "rei.toml (shipped default)";

/// The largest settings file read.
const FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Most image models, and most video models, one bot offers.
const ENTRIES_MAX: usize = 16;
/// Longest key of an image or video model (it travels in button data, at most 64 bytes with the rest).
const KEY_CHARS_MAX: usize = 32;
/// Longest name of an image or video model.
const LABEL_CHARS_MAX: usize = 64;
/// Most durations one video model offers.
const DURATIONS_MAX: usize = 8;
/// Longest video duration offered.
const DURATION_SECONDS_MAX: u32 = 600;
/// Most top-up amounts offered, of cards and of Stars each.
const AMOUNTS_MAX: usize = 8;
/// The largest card top-up offered (1 000 000 ₽).
const CARD_AMOUNT_MAX: Money = Money::from_kopecks(100_000_000);
/// The longest prompt limit: a Telegram message holds at most 4 096 characters.
const PROMPT_CHARS_MAX: usize = 4_096;
/// The largest download limit: what a local Bot API server serves.
const DOWNLOAD_MB_MAX: u64 = 2_000;
/// The highest per-user update rate.
const UPDATES_PER_MINUTE_MAX: u32 = 10_000;
/// The largest per-user update burst.
const UPDATE_BURST_MAX: u32 = 1_000;
/// The longest history page.
const HISTORY_PAGE_MAX: usize = 50;
/// The longest hold TTL: a week.
const HOLD_TTL_MAX: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The highest limit of jobs running at once per user.
const JOBS_RUNNING_MAX: u32 = 1_000;
/// The highest referral share, in basis points (all of the top-up).
const REFERRAL_BP_MAX: u32 = 10_000;
/// The providers a budget can name: the ones the worker runs.
const PROVIDERS: [&str; 2] = ["gemini", "kling"];

/// Everything the settings file says, validated.
#[derive(Clone, PartialEq, Debug)]
pub(crate) struct Settings {
    /// The price list.
    pub(crate) pricing: PricingConfig,
    /// Holds and spend caps.
    pub(crate) billing: BillingSettings,
    /// What the Telegram bot offers and how much it takes.
    pub(crate) bot: BotSettings,
    /// Trial credits and referrals.
    pub(crate) growth: GrowthSettings,
    /// What a Telegram Star sells for.
    pub(crate) stars: StarsConfig,
}

/// `[billing]`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct BillingSettings {
    /// How long a confirmed job's hold lives past its quote's expiry.
    pub(crate) hold_ttl: Duration,
    /// Most one user may spend in any rolling hour; `None`: no cap.
    pub(crate) user_hourly: Option<Money>,
    /// Most one user may spend in any rolling day; `None`: no cap.
    pub(crate) user_daily: Option<Money>,
    /// Most jobs one user may have running at once; `None`: no limit.
    pub(crate) jobs_running_max: Option<u32>,
    /// Most all users together may spend on a provider in any rolling day.
    pub(crate) provider_budgets: BTreeMap<ProviderId, Money>,
}

impl BillingSettings {
    /// The core's billing configuration: these settings over its defaults.
    pub(crate) fn config(&self) -> BillingConfig {
        BillingConfig {
            hold_ttl: self.hold_ttl,
            user_caps: SpendCaps { user_hourly: self.user_hourly, user_daily: self.user_daily, ..SpendCaps::NONE },
            provider_budgets: self.provider_budgets.clone(),
            jobs_running_max: self.jobs_running_max,
            ..BillingConfig::default()
        }
    }
}

/// `[bot]`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct BotSettings {
    /// The card top-ups offered.
    pub(crate) card_amounts: Vec<Money>,
    /// The Stars top-ups offered.
    pub(crate) star_amounts: Vec<u32>,
    /// The longest prompt taken, in characters.
    pub(crate) prompt_chars_max: usize,
    /// The largest file downloaded from Telegram, in MB.
    pub(crate) download_mb_max: u64,
    /// How many updates one user may send a minute.
    pub(crate) updates_per_minute: u32,
    /// How many at once.
    pub(crate) update_burst: u32,
    /// Lines per history page.
    pub(crate) history_page: usize,
    /// The time zone of the times shown.
    pub(crate) time_zone: String,
    /// The image models offered; the first is the one a plain message uses.
    pub(crate) images: Vec<ImageEntry>,
    /// The video models offered, in order.
    pub(crate) videos: Vec<VideoEntry>,
}

/// One `[[bot.images]]`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct ImageEntry {
    /// Its key in button data.
    pub(crate) key: String,
    /// Its name for people.
    pub(crate) label: String,
    /// The product priced for it.
    pub(crate) product: ProductId,
    /// The Gemini model that must serve it; `None`: any.
    pub(crate) model: Option<String>,
}

/// One `[[bot.videos]]`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct VideoEntry {
    /// Its key in button data.
    pub(crate) key: String,
    /// Its name for people.
    pub(crate) label: String,
    /// The Kling model that must serve it.
    pub(crate) model: String,
    /// Each duration in seconds, shortest first, and its product.
    pub(crate) durations: Vec<(u32, ProductId)>,
}

/// `[growth]`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct GrowthSettings {
    /// Credited once to every new member; zero: none.
    pub(crate) trial: Money,
    /// Credited to the referrer once per member brought; zero: none.
    pub(crate) referral_join_bonus: Money,
    /// The referrer's share of each of their referees' top-ups, in basis points (1 000 = 10 %).
    pub(crate) referral_percent_bp: u32,
}

impl Settings {
    /// The shipped default (`rei-bin/rei.toml`, built into the binary), parsed.
    pub(crate) fn shipped() -> Settings {
        match Settings::parse(SHIPPED, SHIPPED_NAME) {
            Ok(settings) => settings,
            Err(e) => panic!("invariant broken: the shipped settings are invalid: {e}"),
        }
    }

    /// The settings of the file at `path`, or the shipped default when `None`.
    ///
    /// # Errors
    /// A file that cannot be read, is larger than 1 MiB, is not TOML, has a key REI does not know or lacks one
    /// it needs, or has a value that is wrong: the error names the file, the key and what is wrong.
    pub(crate) fn load(path: Option<&Path>) -> Result<Settings> {
        let Some(path) = path else { return Ok(Settings::shipped()) };
        let read = || -> std::io::Result<String> {
            let mut text = String::new();
            std::fs::File::open(path)?.take(FILE_BYTES_MAX + 1).read_to_string(&mut text)?;
            Ok(text)
        };
        let text = read().with_context(|| format!("failed to read the settings file {}", path.display()))?;
        if text.len() as u64 > FILE_BYTES_MAX {
            anyhow::bail!("{}: larger than the limit of {FILE_BYTES_MAX} bytes", path.display());
        }
        Ok(Settings::parse(&text, &path.display().to_string())?)
    }

    /// Parses and validates `text`; `origin` names it in errors.
    fn parse(text: &str, origin: &str) -> Result<Settings, SettingsError> {
        let document = toml::Deserializer::parse(text).map_err(|e| SettingsError::syntax(origin, text, &e))?;
        let raw: RawSettings =
            serde_path_to_error::deserialize(document).map_err(|e| SettingsError::serde(origin, text, &e))?;
        Settings::from_raw(raw).map_err(|fail| SettingsError::value(origin, fail))
    }

    fn from_raw(raw: RawSettings) -> Result<Settings, Fail> {
        let settings = Settings {
            pricing: pricing(raw.pricing)?,
            billing: billing(raw.billing)?,
            bot: bot(raw.bot)?,
            growth: growth(raw.growth)?,
            stars: stars(raw.stars)?,
        };
        settings.check_across()?;
        Ok(settings)
    }

    /// The rules between sections: every product the bot sells is priced, every Stars amount can be sold.
    fn check_across(&self) -> Result<(), Fail> {
        let priced = &self.pricing.spec().products;
        let unpriced = |key: Key, product: &ProductId| {
            let price = Key::root("pricing").field("products").entry(product.as_str());
            Fail::new(&key, format!("{product} is not priced: {price} is missing"))
        };
        let bot = Key::root("bot");
        for (i, image) in self.bot.images.iter().enumerate() {
            if !priced.contains_key(&image.product) {
                return Err(unpriced(bot.field("images").index(i).field("product"), &image.product));
            }
        }
        for (i, video) in self.bot.videos.iter().enumerate() {
            for (seconds, product) in &video.durations {
                if !priced.contains_key(product) {
                    let key = bot.field("videos").index(i).field("durations").entry(&seconds.to_string());
                    return Err(unpriced(key, product));
                }
            }
        }
        let (min, max) = (self.stars.min_stars, self.stars.max_stars);
        for (i, stars) in self.bot.star_amounts.iter().enumerate() {
            if !(min..=max).contains(stars) {
                return Err(Fail::new(
                    &bot.field("star_amounts").index(i),
                    format!("{stars} Stars is outside stars.min_stars to stars.max_stars ({min} to {max})"),
                ));
            }
        }
        Ok(())
    }
}

/// Why a settings file is not valid: the file, the key (when one is to blame), what is wrong and, for what
/// the TOML reader found, the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SettingsError {
    origin: String,
    key: Option<String>,
    message: String,
    line: Option<usize>,
}

impl SettingsError {
    fn syntax(origin: &str, text: &str, e: &toml::de::Error) -> SettingsError {
        let line = e.span().map(|span| line_of(text, span.start));
        SettingsError { origin: origin.to_owned(), key: None, message: e.message().to_owned(), line }
    }

    fn serde(origin: &str, text: &str, e: &serde_path_to_error::Error<toml::de::Error>) -> SettingsError {
        let key = Key::of_path(e.path()).map(|k| k.0);
        let line = e.inner().span().map(|span| line_of(text, span.start));
        // In the file's words: serde's fields are the file's keys.
        let message =
            e.inner().message().replacen("unknown field", "unknown key", 1).replacen("missing field", "missing key", 1);
        SettingsError { origin: origin.to_owned(), key, message, line }
    }

    fn value(origin: &str, fail: Fail) -> SettingsError {
        SettingsError { origin: origin.to_owned(), key: Some(fail.key), message: fail.message, line: None }
    }
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.origin)?;
        match (&self.key, self.line) {
            (Some(key), Some(line)) => write!(f, "{key}: {} (line {line})", self.message),
            (Some(key), None) => write!(f, "{key}: {}", self.message),
            (None, Some(line)) => write!(f, "line {line}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for SettingsError {}

/// The 1-based line of byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

/// A key path as the file spells it: `pricing.products."image.x".cost`, `bot.videos[1].durations`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Key(String);

impl Key {
    fn root(name: &str) -> Key {
        Key(segment(name))
    }

    fn field(&self, name: &str) -> Key {
        self.entry(name)
    }

    /// A table key, quoted when it is not bare (`"image.x"`).
    fn entry(&self, key: &str) -> Key {
        Key(format!("{}.{}", self.0, segment(key)))
    }

    fn index(&self, i: usize) -> Key {
        Key(format!("{}[{i}]", self.0))
    }

    /// The key of a serde path, `None` for the document itself.
    fn of_path(path: &serde_path_to_error::Path) -> Option<Key> {
        use serde_path_to_error::Segment;
        path.iter().fold(None, |key: Option<Key>, s| {
            let name = match s {
                Segment::Map { key } => key.as_str(),
                Segment::Enum { variant } => variant.as_str(),
                Segment::Seq { index } => {
                    return Some(key.map_or_else(|| Key(format!("[{index}]")), |k| k.index(*index)));
                }
                Segment::Unknown => "?",
            };
            Some(key.map_or_else(|| Key::root(name), |k| k.entry(name)))
        })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A TOML key as written: bare when it can be, quoted otherwise.
fn segment(key: &str) -> String {
    let bare = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if bare { key.to_owned() } else { format!("{key:?}") }
}

/// A wrong value and its key, before the file is named.
#[derive(Debug)]
struct Fail {
    key: String,
    message: String,
}

impl Fail {
    fn new(key: &Key, message: impl Into<String>) -> Fail {
        Fail { key: key.0.clone(), message: message.into() }
    }
}

fn pricing(raw: RawPricing) -> Result<PricingConfig, Fail> {
    let k = Key::root("pricing");
    let mut products = BTreeMap::new();
    for (id, p) in raw.products {
        let key = k.field("products").entry(&id);
        let product = ProductId::parse(&id).map_err(|e| Fail::new(&key, format!("{id:?} is not a product id: {e}")))?;
        let cost = unit_price(&key.field("cost"), &p.cost)?;
        let target_margin = percent(&key.field("margin_percent"), &p.margin_percent)?;
        products.insert(product, ProductPricing { cost, target_margin, unit: p.unit });
    }
    let mut peak_windows = Vec::with_capacity(raw.peak_windows.len());
    for (i, w) in raw.peak_windows.into_iter().enumerate() {
        let key = k.field("peak_windows").index(i);
        peak_windows.push(PeakWindow {
            days: days(&key.field("days"), &w.days)?,
            start: clock(&key.field("start"), &w.start)?,
            end: clock(&key.field("end"), &w.end)?,
            multiplier: multiplier(&key.field("multiplier"), &w.multiplier)?,
        });
    }
    let tiers = k.field("tier_discount_percent");
    let spec = PricingSpec {
        products,
        margin_floor: percent(&k.field("margin_floor_percent"), &raw.margin_floor_percent)?,
        refuse_below_floor: raw.refuse_below_floor,
        time_zone: raw.time_zone,
        peak_windows,
        off_peak_multiplier: multiplier(&k.field("off_peak_multiplier"), &raw.off_peak_multiplier)?,
        tier_discounts: TierDiscounts {
            basic: percent(&tiers.field("basic"), &raw.tier_discount_percent.basic)?,
            pro: percent(&tiers.field("pro"), &raw.tier_discount_percent.pro)?,
            enterprise: percent(&tiers.field("enterprise"), &raw.tier_discount_percent.enterprise)?,
        },
        quote_ttl: Duration::from_secs(raw.quote_ttl_seconds),
    };
    PricingConfig::new(spec).map_err(|e| pricing_error(&k, &e))
}

/// The core's pricing rule `e` as the key it breaks and what is wrong, in the file's terms (percents, seconds).
fn pricing_error(k: &Key, e: &PricingConfigError) -> Fail {
    use PricingConfigError as E;
    let product = |p: &ProductId, field: &str| k.field("products").entry(p.as_str()).field(field);
    let window = |i: usize, field: &str| k.field("peak_windows").index(i).field(field);
    let (key, message) = match e {
        E::NegativeMargin { product: p, margin } => {
            (product(p, "margin_percent"), format!("{} % is negative", percent_of(*margin)))
        }
        E::UnitName { product: p } => {
            (product(p, "unit"), format!("a unit name must be 1 to {UNIT_NAME_LEN_MAX} characters"))
        }
        E::NegativeFloor { floor } => {
            (k.field("margin_floor_percent"), format!("{} % is negative", percent_of(*floor)))
        }
        E::WindowMultiplier { window: i, multiplier } => {
            (window(*i, "multiplier"), format!("{multiplier} must be above zero"))
        }
        E::EmptyWindow { window: i } => (window(*i, "days"), "no days: the window would never apply".to_owned()),
        E::OffPeakMultiplier { multiplier } => {
            (k.field("off_peak_multiplier"), format!("{multiplier} must be above zero"))
        }
        E::DiscountOutOfRange { tier, discount } => (
            k.field("tier_discount_percent").field(&tier.to_string()),
            format!("{} % must be at least 0 and below 100", percent_of(*discount)),
        ),
        E::DiscountsOutOfOrder { discounts: d } => (
            k.field("tier_discount_percent"),
            format!(
                "basic {} %, pro {} %, enterprise {} %: a higher tier must not get less off",
                percent_of(d.basic),
                percent_of(d.pro),
                percent_of(d.enterprise)
            ),
        ),
        E::UnknownTimeZone { name } => {
            (k.field("time_zone"), format!("{name:?} is not an IANA time zone (such as \"Europe/Moscow\")"))
        }
        E::QuoteTtl { ttl } => {
            (k.field("quote_ttl_seconds"), format!("{} s must be 1 to {} s", ttl.as_secs(), QUOTE_TTL_MAX.as_secs()))
        }
        E::TooMany { what, count, max } => (
            k.field(if *what == "products" { "products" } else { "peak_windows" }),
            format!("{count} is more than the limit of {max}"),
        ),
    };
    Fail::new(&key, message)
}

fn billing(raw: RawBilling) -> Result<BillingSettings, Fail> {
    let k = Key::root("billing");
    let hold_ttl = seconds(&k.field("hold_ttl_seconds"), raw.hold_ttl_seconds, HOLD_TTL_MAX)?;
    let cap = |name: &str, amount: Option<&Amount>| amount.map(|a| positive_amount(&k.field(name), a)).transpose();
    let user_hourly = cap("user_hourly", raw.user_hourly.as_ref())?;
    let user_daily = cap("user_daily", raw.user_daily.as_ref())?;
    if let (Some(hourly), Some(daily)) = (user_hourly, user_daily)
        && hourly > daily
    {
        return Err(Fail::new(&k.field("user_hourly"), format!("{hourly} is above user_daily {daily}")));
    }
    let jobs_running_max =
        raw.jobs_running_max.map(|n| within(&k.field("jobs_running_max"), n, 1, JOBS_RUNNING_MAX)).transpose()?;
    let mut provider_budgets = BTreeMap::new();
    for (name, amount) in &raw.provider_budgets {
        let key = k.field("provider_budgets").entry(name);
        let provider = ProviderId::parse(name)
            .ok()
            .filter(|_| PROVIDERS.contains(&name.as_str()))
            .ok_or_else(|| Fail::new(&key, format!("{name:?} is not a provider (one of {})", PROVIDERS.join(", "))))?;
        provider_budgets.insert(provider, positive_amount(&key, amount)?);
    }
    Ok(BillingSettings { hold_ttl, user_hourly, user_daily, jobs_running_max, provider_budgets })
}

fn bot(raw: RawBot) -> Result<BotSettings, Fail> {
    let k = Key::root("bot");
    let card_amounts = offers(&k.field("card_amounts"), &raw.card_amounts, |key, a| {
        let amount = positive_amount(key, a)?;
        if amount > CARD_AMOUNT_MAX {
            return Err(Fail::new(key, format!("{amount} is above the limit of {CARD_AMOUNT_MAX}")));
        }
        Ok(amount)
    })?;
    let star_amounts = offers(&k.field("star_amounts"), &raw.star_amounts, |key, n| match *n {
        0 => Err(Fail::new(key, "0 Stars is not a top-up")),
        n => Ok(n),
    })?;
    let time_zone = raw.time_zone;
    if jiff::tz::TimeZone::get(&time_zone).is_err() {
        return Err(Fail::new(
            &k.field("time_zone"),
            format!("{time_zone:?} is not an IANA time zone (such as \"Europe/Moscow\")"),
        ));
    }
    let mut keys = BTreeMap::new();
    let images_key = k.field("images");
    count(&images_key, raw.images.len(), 1, ENTRIES_MAX, "image models")?;
    let mut images = Vec::with_capacity(raw.images.len());
    for (i, image) in raw.images.into_iter().enumerate() {
        let key = images_key.index(i);
        let model = match image.model {
            Some(model) if !crate::providers::GEMINI_MODELS.iter().any(|(name, _)| *name == model) => {
                let known: Vec<&str> = crate::providers::GEMINI_MODELS.iter().map(|(name, _)| *name).collect();
                let message = format!("{model:?} is not a Gemini model the worker runs ({})", known.join(", "));
                return Err(Fail::new(&key.field("model"), message));
            }
            model => model,
        };
        images.push(ImageEntry {
            key: entry_key(&key.field("key"), image.key, &mut keys)?,
            label: label(&key.field("label"), image.label)?,
            product: product_id(&key.field("product"), &image.product)?,
            model,
        });
    }
    let videos_key = k.field("videos");
    count(&videos_key, raw.videos.len(), 0, ENTRIES_MAX, "video models")?;
    let mut videos = Vec::with_capacity(raw.videos.len());
    for (i, video) in raw.videos.into_iter().enumerate() {
        let key = videos_key.index(i);
        let entry_key = entry_key(&key.field("key"), video.key, &mut keys)?;
        let label = label(&key.field("label"), video.label)?;
        let kling = rei_adapters::kling::DEFAULT_MODELS;
        if !kling.iter().any(|m| m.model_name == video.model) {
            let known: Vec<&str> = kling.iter().map(|m| m.model_name).collect();
            let message = format!("{:?} is not a Kling model the worker runs ({})", video.model, known.join(", "));
            return Err(Fail::new(&key.field("model"), message));
        }
        let durations_key = key.field("durations");
        count(&durations_key, video.durations.len(), 1, DURATIONS_MAX, "durations")?;
        let mut durations: Vec<(u32, ProductId)> = Vec::with_capacity(video.durations.len());
        for (text, product) in &video.durations {
            let seconds = text
                .parse::<u32>()
                .ok()
                .filter(|_| text.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| Fail::new(&durations_key, format!("{text:?} is not a number of seconds")))?;
            if seconds == 0 {
                return Err(Fail::new(&durations_key, "0 s is not a duration"));
            }
            if seconds > DURATION_SECONDS_MAX {
                let message = format!("{seconds} s is longer than the limit of {DURATION_SECONDS_MAX} s");
                return Err(Fail::new(&durations_key, message));
            }
            if durations.iter().any(|(s, _)| *s == seconds) {
                return Err(Fail::new(&durations_key, format!("{seconds} s is listed twice")));
            }
            durations.push((seconds, product_id(&durations_key.entry(text), product)?));
        }
        durations.sort_by_key(|(seconds, _)| *seconds);
        videos.push(VideoEntry { key: entry_key, label, model: video.model, durations });
    }
    Ok(BotSettings {
        card_amounts,
        star_amounts,
        prompt_chars_max: within(&k.field("prompt_chars_max"), raw.prompt_chars_max, 1, PROMPT_CHARS_MAX)?,
        download_mb_max: within(&k.field("download_mb_max"), raw.download_mb_max, 1, DOWNLOAD_MB_MAX)?,
        updates_per_minute: within(&k.field("updates_per_minute"), raw.updates_per_minute, 1, UPDATES_PER_MINUTE_MAX)?,
        update_burst: within(&k.field("update_burst"), raw.update_burst, 1, UPDATE_BURST_MAX)?,
        history_page: within(&k.field("history_page"), raw.history_page, 1, HISTORY_PAGE_MAX)?,
        time_zone,
        images,
        videos,
    })
}

fn growth(raw: RawGrowth) -> Result<GrowthSettings, Fail> {
    let k = Key::root("growth");
    let grant = |name: &str, a: &Amount| {
        let amount = amount(&k.field(name), a)?;
        if amount.is_negative() {
            return Err(Fail::new(&k.field(name), format!("{:?} is negative (\"0\" for none)", a.0)));
        }
        Ok(amount)
    };
    let key = k.field("referral_percent");
    let bp = decimal(&key, &raw.referral_percent)?
        .checked_mul(Decimal::ONE_HUNDRED)
        .filter(|bp| bp.fract().is_zero())
        .and_then(|bp| u32::try_from(bp).ok())
        .filter(|bp| *bp <= REFERRAL_BP_MAX)
        .ok_or_else(|| {
            let text = &raw.referral_percent.0;
            Fail::new(&key, format!("{text} must be 0 to 100 in steps of at most 0.01"))
        })?;
    Ok(GrowthSettings {
        trial: grant("trial", &raw.trial)?,
        referral_join_bonus: grant("referral_join_bonus", &raw.referral_join_bonus)?,
        referral_percent_bp: bp,
    })
}

fn stars(raw: RawStars) -> Result<StarsConfig, Fail> {
    let k = Key::root("stars");
    let config = StarsConfig {
        rub_per_star: amount(&k.field("rub_per_star"), &raw.rub_per_star)?,
        min_stars: raw.min_stars,
        max_stars: raw.max_stars,
        title: raw.title,
        description: raw.description,
    };
    config.validate().map_err(|e| {
        let (field, message) = match e {
            StarsConfigError::Rate { rate } => {
                ("rub_per_star", format!("{rate} must be above 0 and at most {RUB_PER_STAR_MAX}"))
            }
            StarsConfigError::Limits { min, max } => {
                ("min_stars", format!("{min} to {max}: must be at least 1 and at most max_stars"))
            }
            StarsConfigError::Title { chars } => {
                ("title", format!("{chars} characters: must be 1 to {TITLE_CHARS_MAX}"))
            }
            StarsConfigError::Description { chars } => {
                ("description", format!("{chars} characters: must be 1 to {DESCRIPTION_CHARS_MAX}"))
            }
        };
        Fail::new(&k.field(field), message)
    })?;
    Ok(config)
}

/// A list of top-up amounts: 1 to [`AMOUNTS_MAX`], each read by `each`, none twice.
fn offers<R, T: Ord + Copy + fmt::Display>(
    key: &Key,
    items: &[R],
    each: impl Fn(&Key, &R) -> Result<T, Fail>,
) -> Result<Vec<T>, Fail> {
    count(key, items.len(), 1, AMOUNTS_MAX, "amounts")?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let value = each(&key.index(i), item)?;
        if !seen.insert(value) {
            return Err(Fail::new(&key.index(i), format!("{value} is listed twice")));
        }
        out.push(value);
    }
    Ok(out)
}

fn count(key: &Key, n: usize, min: usize, max: usize, what: &str) -> Result<(), Fail> {
    if (min..=max).contains(&n) { Ok(()) } else { Err(Fail::new(key, format!("{n} {what}: must list {min} to {max}"))) }
}

fn within<T: PartialOrd + fmt::Display>(key: &Key, value: T, min: T, max: T) -> Result<T, Fail> {
    if min <= value && value <= max {
        Ok(value)
    } else {
        Err(Fail::new(key, format!("{value} must be {min} to {max}")))
    }
}

fn seconds(key: &Key, seconds: u64, max: Duration) -> Result<Duration, Fail> {
    if seconds == 0 {
        return Err(Fail::new(key, "0 s is not a duration"));
    }
    let duration = Duration::from_secs(seconds);
    if duration > max {
        return Err(Fail::new(key, format!("{seconds} s is longer than the limit of {} s", max.as_secs())));
    }
    Ok(duration)
}

/// A model's key: 1 to [`KEY_CHARS_MAX`] characters of `a-z 0-9 . - _`, used by no other model.
fn entry_key(key: &Key, text: String, seen: &mut BTreeMap<String, Key>) -> Result<String, Fail> {
    let ok = (1..=KEY_CHARS_MAX).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'));
    if !ok {
        return Err(Fail::new(key, format!("{text:?} must be 1 to {KEY_CHARS_MAX} characters of a-z 0-9 . - _")));
    }
    if let Some(first) = seen.get(&text) {
        return Err(Fail::new(key, format!("{text:?} is already the key of {first}")));
    }
    seen.insert(text.clone(), key.clone());
    Ok(text)
}

fn label(key: &Key, text: String) -> Result<String, Fail> {
    let chars = text.chars().count();
    if text.trim().is_empty() || chars > LABEL_CHARS_MAX {
        return Err(Fail::new(key, format!("{text:?} must be 1 to {LABEL_CHARS_MAX} characters, not blank")));
    }
    Ok(text)
}

fn product_id(key: &Key, text: &str) -> Result<ProductId, Fail> {
    ProductId::parse(text).map_err(|e| Fail::new(key, format!("{text:?} is not a product id: {e}")))
}

/// `["mon", "fri"]` as a set of weekdays; a day named twice is a mistake.
fn days(key: &Key, names: &[String]) -> Result<Weekdays, Fail> {
    const NAMES: [(&str, Weekday); 7] = [
        ("mon", Weekday::Monday),
        ("tue", Weekday::Tuesday),
        ("wed", Weekday::Wednesday),
        ("thu", Weekday::Thursday),
        ("fri", Weekday::Friday),
        ("sat", Weekday::Saturday),
        ("sun", Weekday::Sunday),
    ];
    let mut days = Vec::with_capacity(names.len());
    for name in names {
        let Some((_, day)) = NAMES.iter().find(|(n, _)| n == name) else {
            return Err(Fail::new(key, format!("{name:?} is not a day (write mon, tue, wed, thu, fri, sat or sun)")));
        };
        if days.contains(day) {
            return Err(Fail::new(key, format!("{name:?} is listed twice")));
        }
        days.push(*day);
    }
    Ok(Weekdays::of(&days))
}

/// `"19:00"` as a time of day.
fn clock(key: &Key, text: &str) -> Result<Time, Fail> {
    let two_digits = |s: &str| (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<i8>().ok());
    text.split_once(':')
        .and_then(|(h, m)| Some((two_digits(h)??, two_digits(m)??)))
        .and_then(|(h, m)| Time::new(h, m, 0, 0).ok())
        .ok_or_else(|| Fail::new(key, format!("{text:?} is not a time of day (write \"19:00\")")))
}

fn amount(key: &Key, text: &Amount) -> Result<Money, Fail> {
    Money::parse(&text.0).map_err(|e| {
        let text = &text.0;
        let message = match e {
            MoneyError::TooPrecise(_) => format!("{text:?} has more than two decimals: a kopeck is the least amount"),
            MoneyError::Overflow => format!("{text:?} is out of range"),
            MoneyError::Length | MoneyError::Syntax(_) => {
                format!("{text:?} is not an amount in roubles ({})", hint(text, |t| Money::parse(t).is_ok()))
            }
        };
        Fail::new(key, message)
    })
}

fn positive_amount(key: &Key, text: &Amount) -> Result<Money, Fail> {
    let amount = amount(key, text)?;
    if amount.is_positive() { Ok(amount) } else { Err(Fail::new(key, format!("{:?} must be above zero", text.0))) }
}

/// A cost per unit: roubles, exact below a kopeck (`"0.015"`), above zero.
fn unit_price(key: &Key, text: &Amount) -> Result<UnitPrice, Fail> {
    let t = &text.0;
    if t.starts_with('-') || Money::parse(t).is_ok_and(Money::is_zero) {
        return Err(Fail::new(key, format!("{t:?} must be above zero")));
    }
    UnitPrice::parse(t).map_err(|_| {
        Fail::new(key, format!("{t:?} is not an amount in roubles ({})", hint(t, |t| UnitPrice::parse(t).is_ok())))
    })
}

/// What to write instead of `text`: the same with a decimal point for a comma, without spaces and without a
/// currency after the number, when that is valid; otherwise an example.
fn hint(text: &str, valid: impl Fn(&str) -> bool) -> String {
    let fixed: String = text.chars().filter(|c| !c.is_whitespace()).map(|c| if c == ',' { '.' } else { c }).collect();
    let fixed = fixed.trim_end_matches(|c: char| !c.is_ascii_digit());
    if !fixed.is_empty() && valid(fixed) {
        format!("write \"{fixed}\"")
    } else {
        "write roubles as \"3.20\"".to_owned()
    }
}

fn decimal(key: &Key, text: &Number) -> Result<Decimal, Fail> {
    Ratio::parse(&text.0)
        .map(Ratio::value)
        .map_err(|_| Fail::new(key, format!("{:?} is not a number (write 10 or \"12.5\")", text.0)))
}

/// A percent as a ratio: `10` is 0.10.
fn percent(key: &Key, text: &Number) -> Result<Ratio, Fail> {
    decimal(key, text)?
        .checked_mul(Decimal::new(1, 2))
        .map(Ratio::new)
        .ok_or_else(|| Fail::new(key, format!("{} is out of range", text.0)))
}

fn multiplier(key: &Key, text: &Number) -> Result<Ratio, Fail> {
    decimal(key, text).map(Ratio::new)
}

/// A ratio in percent, as written: 0.1 is `10`.
fn percent_of(ratio: Ratio) -> String {
    ratio.value().checked_mul(Decimal::ONE_HUNDRED).map_or_else(|| ratio.to_string(), |p| p.normalize().to_string())
}

/// `rei config …`.
#[derive(clap::Subcommand)]
pub(crate) enum ConfigCommand {
    /// Loads and validates a settings file (prices, models, limits) and prints a summary; exits 1 naming the key
    /// that is wrong.
    Check {
        /// The settings file; without it, the shipped default.
        #[arg(long, env = "REI_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Prints the shipped default settings file, to start one from.
    #[command(name = "default")]
    ShippedDefault,
}

/// Runs `rei config …`.
///
/// # Errors
/// The settings file's first error.
pub(crate) fn run(command: ConfigCommand) -> Result<ExitCode> {
    match command {
        ConfigCommand::Check { config } => {
            let settings = Settings::load(config.as_deref())?;
            let origin = config.map_or_else(|| SHIPPED_NAME.to_owned(), |path| path.display().to_string());
            print!("{}", summary(&origin, &settings));
        }
        ConfigCommand::ShippedDefault => print!("{SHIPPED}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// What `rei config check` prints: each product's price off-peak for the basic tier, the models, the limits.
fn summary(origin: &str, s: &Settings) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_summary(&mut out, origin, s);
    out
}

fn write_summary(out: &mut String, origin: &str, s: &Settings) -> fmt::Result {
    let spec = s.pricing.spec();
    writeln!(out, "{origin}: valid")?;
    let at = off_peak(&s.pricing);
    let when = if at.is_some() { "off-peak" } else { "no time is off-peak; at 1970-01-01 00:00 UTC" };
    writeln!(out, "products ({}, basic tier, one unit; time zone {})", when, spec.time_zone)?;
    let pricer = Pricer::new(s.pricing.clone());
    for (product, p) in &spec.products {
        let quote = pricer.quote(product, 1, Tier::Basic, at.unwrap_or(Timestamp::from_millis(0)), QuoteId::from(0));
        let price = match quote {
            Ok(q) if q.margin_alert.is_some() => format!("{} RUB (below the margin floor)", q.price),
            Ok(q) => format!("{} RUB", q.price),
            Err(e) => format!("not sold: {e}"),
        };
        let margin = percent_of(p.target_margin);
        let cost = rubles(p.cost);
        writeln!(out, "  {:<24} {price:>12} per {:<6} (cost {cost} +{margin} %)", product.as_str(), p.unit)?;
    }
    let d = &spec.tier_discounts;
    writeln!(
        out,
        "pricing      {} peak windows, off-peak x{}; tiers -{} % / -{} % / -{} %; floor {} %{}; quotes {} s",
        spec.peak_windows.len(),
        spec.off_peak_multiplier,
        percent_of(d.basic),
        percent_of(d.pro),
        percent_of(d.enterprise),
        percent_of(spec.margin_floor),
        if spec.refuse_below_floor { " (refused below)" } else { " (alert only)" },
        spec.quote_ttl.as_secs()
    )?;
    writeln!(out, "images")?;
    for image in &s.bot.images {
        let model = image.model.as_deref().unwrap_or("any model");
        let label = format!("{:?}", image.label);
        writeln!(out, "  {:<16} {label:<20} {} ({model})", image.key, image.product)?;
    }
    writeln!(out, "videos")?;
    for video in &s.bot.videos {
        let durations: Vec<String> = video.durations.iter().map(|(sec, p)| format!("{sec} s {p}")).collect();
        let label = format!("{:?}", video.label);
        writeln!(out, "  {:<16} {label:<20} {}: {}", video.key, video.model, durations.join(", "))?;
    }
    let b = &s.bot;
    let list = |items: Vec<String>| items.join(", ");
    writeln!(out, "limits")?;
    writeln!(out, "  prompts      up to {} characters", b.prompt_chars_max)?;
    writeln!(out, "  downloads    up to {} MB", b.download_mb_max)?;
    writeln!(out, "  updates      {} a minute per user, {} at once", b.updates_per_minute, b.update_burst)?;
    writeln!(out, "  history      {} lines a page; times in {}", b.history_page, b.time_zone)?;
    let cards = list(b.card_amounts.iter().map(Money::to_string).collect());
    let stars = list(b.star_amounts.iter().map(u32::to_string).collect());
    writeln!(out, "  top-ups      card {cards} RUB; Stars {stars}")?;
    let st = &s.stars;
    writeln!(out, "  stars        {} RUB a Star, {} to {} an invoice", st.rub_per_star, st.min_stars, st.max_stars)?;
    let bl = &s.billing;
    let cap = |c: Option<Money>| c.map_or_else(|| "none".to_owned(), |m| format!("{m} RUB"));
    let jobs = bl.jobs_running_max.map_or_else(|| "no limit".to_owned(), |n| format!("at most {n}"));
    writeln!(out, "  holds        live {} s past the quote; jobs running per user: {jobs}", bl.hold_ttl.as_secs())?;
    writeln!(out, "  caps         per user: {} an hour, {} a day", cap(bl.user_hourly), cap(bl.user_daily))?;
    let budgets = list(bl.provider_budgets.iter().map(|(p, m)| format!("{p} {m} RUB")).collect());
    writeln!(out, "  budgets      {}", if budgets.is_empty() { "none" } else { &budgets })?;
    let g = &s.growth;
    let share = Decimal::new(i64::from(g.referral_percent_bp), 2).normalize();
    writeln!(out, "  growth       trial {} RUB, join bonus {} RUB, referrals {share} %", g.trial, g.referral_join_bonus)
}

/// A cost per unit in roubles, with kopecks as money has them (`3.20`) and exact below a kopeck (`0.015`).
fn rubles(price: UnitPrice) -> String {
    let kopecks = price.kopecks();
    match i64::try_from(kopecks) {
        Ok(whole) if kopecks.fract().is_zero() => Money::from_kopecks(whole).to_string(),
        _ => price.to_string(),
    }
}

/// An instant outside every peak window, looked for over a week in steps of 15 minutes; `None` when there is none.
fn off_peak(pricing: &PricingConfig) -> Option<Timestamp> {
    const STEP_MS: i64 = 15 * 60 * 1000;
    (0..7 * 24 * 4)
        .map(|i| Timestamp::from_millis(i * STEP_MS))
        .find(|at| matches!(pricing.multiplier_at(*at), Some((_, None))))
}

/// Reads `.env` from the working directory, when there is one, into the environment; variables already set
/// win. Returns the file read.
///
/// It must run before any thread starts (setting the environment is sound only while the process has one) and
/// before anything reads the environment: the log filter and the command line's `env` values.
///
/// # Errors
/// A `.env` that cannot be read or has a line that is not `NAME=value`.
pub(crate) fn load_dotenv() -> Result<Option<PathBuf>> {
    let Ok(dir) = std::env::current_dir() else { return Ok(None) };
    let path = dir.join(".env");
    if !path.is_file() {
        return Ok(None);
    }
    dotenvy::from_path(&path).with_context(|| format!("failed to read {}", path.display()))?;
    Ok(Some(path))
}
