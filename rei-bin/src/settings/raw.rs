//! The settings file as written: every table and key, with amounts and numbers still as text. Unknown keys are
//! refused here; [`super`] turns the text into domain values and names the key of anything wrong.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    pub(super) pricing: RawPricing,
    pub(super) billing: RawBilling,
    pub(super) bot: RawBot,
    pub(super) growth: RawGrowth,
    pub(super) stars: RawStars,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPricing {
    pub(super) time_zone: String,
    pub(super) margin_floor_percent: Number,
    pub(super) refuse_below_floor: bool,
    pub(super) off_peak_multiplier: Number,
    pub(super) quote_ttl_seconds: u64,
    pub(super) tier_discount_percent: RawTiers,
    pub(super) products: BTreeMap<String, RawProduct>,
    #[serde(default)]
    pub(super) peak_windows: Vec<RawWindow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTiers {
    pub(super) basic: Number,
    pub(super) pro: Number,
    pub(super) enterprise: Number,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProduct {
    pub(super) cost: Amount,
    pub(super) margin_percent: Number,
    pub(super) unit: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWindow {
    pub(super) days: Vec<String>,
    pub(super) start: String,
    pub(super) end: String,
    pub(super) multiplier: Number,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBilling {
    pub(super) hold_ttl_seconds: u64,
    pub(super) user_hourly: Option<Amount>,
    pub(super) user_daily: Option<Amount>,
    pub(super) jobs_running_max: Option<u32>,
    #[serde(default)]
    pub(super) provider_budgets: BTreeMap<String, Amount>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBot {
    pub(super) card_amounts: Vec<Amount>,
    pub(super) star_amounts: Vec<u32>,
    pub(super) prompt_chars_max: usize,
    pub(super) download_mb_max: u64,
    pub(super) updates_per_minute: u32,
    pub(super) update_burst: u32,
    pub(super) history_page: usize,
    pub(super) time_zone: String,
    pub(super) images: Vec<RawImage>,
    #[serde(default)]
    pub(super) videos: Vec<RawVideo>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawImage {
    pub(super) key: String,
    pub(super) label: String,
    pub(super) product: String,
    pub(super) model: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVideo {
    pub(super) key: String,
    pub(super) label: String,
    pub(super) model: String,
    /// Seconds (as TOML keys are text) to the product of that duration.
    pub(super) durations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGrowth {
    pub(super) trial: Amount,
    pub(super) referral_join_bonus: Amount,
    pub(super) referral_percent: Number,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStars {
    pub(super) rub_per_star: Amount,
    pub(super) min_stars: u32,
    pub(super) max_stars: u32,
    pub(super) title: String,
    pub(super) description: String,
}

/// An amount of roubles, written as a string: a TOML float is refused, because `0.1 + 0.2` is not money.
pub(super) struct Amount(pub(super) String);

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Amount, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = Amount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount of roubles as a string, such as \"3.20\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Amount, E> {
                Ok(Amount(text.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Amount, E> {
                Err(E::custom(format!("{n} is a number: write amounts as strings (\"{n}.00\")")))
            }
            fn visit_f64<E: de::Error>(self, x: f64) -> Result<Amount, E> {
                Err(E::custom(format!("{x} is a float: write amounts as strings (\"{x:.2}\")")))
            }
        }
        deserializer.deserialize_any(Text)
    }
}

/// A percent or a multiplier, written as an integer or a string (`10`, `"12.5"`): a TOML float is refused.
pub(super) struct Number(pub(super) String);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Number, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a decimal number as a string, such as 10 or \"12.5\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Number, E> {
                Ok(Number(text.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Number, E> {
                Ok(Number(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Number, E> {
                Ok(Number(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, x: f64) -> Result<Number, E> {
                Err(E::custom(format!("{x} is a float: write it as an integer or a string (\"{x}\")")))
            }
        }
        deserializer.deserialize_any(Text)
    }
}
