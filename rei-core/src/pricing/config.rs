//! The validated pricing configuration: products, margin floor, peak windows, tier discounts, quote TTL.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use jiff::civil::{DateTime, Time, Weekday};
use jiff::tz::TimeZone;

use crate::ids::ProductId;
use crate::money::{Money, Ratio, UnitPrice};
use crate::time::Timestamp;

/// Most products one configuration may hold.
pub const PRODUCTS_MAX: usize = 1024;
/// Most peak windows one configuration may hold.
pub const PEAK_WINDOWS_MAX: usize = 32;
/// Longest unit name (`image`, `video`), which a bot shows next to a price.
pub const UNIT_NAME_LEN_MAX: usize = 32;
/// Longest quote TTL: a price shown a day ago no longer reflects the time window it was made for.
pub const QUOTE_TTL_MAX: Duration = Duration::from_secs(24 * 60 * 60);

/// A customer tier; higher tiers get larger discounts.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "snake_case"))]
pub enum Tier {
    /// The default tier.
    Basic,
    /// Paying subscribers.
    Pro,
    /// Contract customers.
    Enterprise,
}

impl Tier {
    /// Every tier, lowest first.
    pub const ALL: [Tier; 3] = [Tier::Basic, Tier::Pro, Tier::Enterprise];
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tier::Basic => "basic",
            Tier::Pro => "pro",
            Tier::Enterprise => "enterprise",
        })
    }
}

/// The discount of each tier, a fraction of the price in `[0, 1)`.
///
/// Invariant (checked by [`PricingConfig::new`]): `basic <= pro <= enterprise`, so a higher tier never pays more.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct TierDiscounts {
    /// Discount of [`Tier::Basic`].
    pub basic: Ratio,
    /// Discount of [`Tier::Pro`].
    pub pro: Ratio,
    /// Discount of [`Tier::Enterprise`].
    pub enterprise: Ratio,
}

impl TierDiscounts {
    /// The discount of `tier`.
    #[must_use]
    pub fn get(&self, tier: Tier) -> Ratio {
        match tier {
            Tier::Basic => self.basic,
            Tier::Pro => self.pro,
            Tier::Enterprise => self.enterprise,
        }
    }
}

/// A set of weekdays.
///
/// With the `serde` feature it travels as its bits (Monday is bit 0, Sunday bit 6); other bits are refused.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(try_from = "u8", into = "u8"))]
pub struct Weekdays(u8);

impl From<Weekdays> for u8 {
    fn from(days: Weekdays) -> u8 {
        days.0
    }
}

impl TryFrom<u8> for Weekdays {
    type Error = &'static str;
    fn try_from(bits: u8) -> Result<Weekdays, &'static str> {
        if bits & !Weekdays::EVERY_DAY.0 == 0 { Ok(Weekdays(bits)) } else { Err("weekday bits above Sunday's") }
    }
}

impl Weekdays {
    /// Monday to Sunday.
    pub const EVERY_DAY: Weekdays = Weekdays(0b111_1111);
    /// Monday to Friday.
    pub const WORKDAYS: Weekdays = Weekdays(0b001_1111);
    /// Saturday and Sunday.
    pub const WEEKEND: Weekdays = Weekdays(0b110_0000);

    /// The set of the given days.
    #[must_use]
    pub fn of(days: &[Weekday]) -> Weekdays {
        Weekdays(days.iter().fold(0, |set, day| set | Weekdays::bit(*day)))
    }

    /// `true` when `day` is in the set.
    #[must_use]
    pub fn contains(self, day: Weekday) -> bool {
        self.0 & Weekdays::bit(day) != 0
    }

    /// `true` when no day is in the set.
    #[must_use]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn bit(day: Weekday) -> u8 {
        // Monday is 0 and Sunday is 6, so the shift always fits in a u8.
        1 << day.to_monday_zero_offset().unsigned_abs()
    }
}

impl fmt::Debug for Weekdays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = (0..7).filter(|i| self.0 & (1 << i) != 0).map(|i| ["Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"][i]);
        f.debug_set().entries(days).finish()
    }
}

/// A recurring local-time window with its own price multiplier, e.g. weekday evenings ×1.20.
///
/// The window starts at `start` on each day in `days` and ends at `end`: the same day when `start < end`, the
/// next day when `start > end` (a window crossing midnight belongs to the day it starts on, so Friday
/// 22:00–02:00 covers early Saturday), and exactly 24 hours later when `start == end`. `end` is exclusive.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PeakWindow {
    /// The days on which the window starts.
    pub days: Weekdays,
    /// Local start time, inclusive.
    pub start: Time,
    /// Local end time, exclusive.
    pub end: Time,
    /// The factor applied to the list price inside the window; above zero (below one makes a cheap window).
    pub multiplier: Ratio,
}

impl PeakWindow {
    /// `true` when the local date and time falls inside the window.
    #[must_use]
    pub fn contains(&self, local: DateTime) -> bool {
        let (day, time) = (local.weekday(), local.time());
        if self.start < self.end {
            self.days.contains(day) && self.start <= time && time < self.end
        } else {
            (self.days.contains(day) && time >= self.start) || (self.days.contains(day.previous()) && time < self.end)
        }
    }
}

/// How one product is priced.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ProductPricing {
    /// What one unit costs us at the provider.
    pub cost: UnitPrice,
    /// The margin added on top of cost, e.g. `0.60` for +60 %; not negative.
    pub target_margin: Ratio,
    /// What one unit is called (`image`, `video`), 1 to [`UNIT_NAME_LEN_MAX`] characters.
    pub unit: String,
}

/// Unvalidated pricing settings; [`PricingConfig::new`] turns them into a configuration.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PricingSpec {
    /// Every product sold, at most [`PRODUCTS_MAX`].
    pub products: BTreeMap<ProductId, ProductPricing>,
    /// The lowest acceptable effective margin, e.g. `0.20`; not negative.
    pub margin_floor: Ratio,
    /// Refuse a quote whose effective margin is below the floor, instead of only raising an alert.
    pub refuse_below_floor: bool,
    /// The IANA time zone the peak windows are read in, e.g. `Europe/Moscow`.
    pub time_zone: String,
    /// Peak windows, at most [`PEAK_WINDOWS_MAX`]; where windows overlap, the first in this list applies.
    pub peak_windows: Vec<PeakWindow>,
    /// The multiplier outside every window; above zero.
    pub off_peak_multiplier: Ratio,
    /// The discount of each tier.
    pub tier_discounts: TierDiscounts,
    /// How long a quote can be confirmed; above zero and at most [`QUOTE_TTL_MAX`].
    pub quote_ttl: Duration,
}

impl Default for PricingSpec {
    /// No products, no floor, UTC, no windows, off-peak ×1, no discounts, quotes valid for ten minutes.
    fn default() -> PricingSpec {
        PricingSpec {
            products: BTreeMap::new(),
            margin_floor: Ratio::ZERO,
            refuse_below_floor: false,
            time_zone: "UTC".to_owned(),
            peak_windows: Vec::new(),
            off_peak_multiplier: Ratio::ONE,
            tier_discounts: TierDiscounts::default(),
            quote_ttl: Duration::from_secs(10 * 60),
        }
    }
}

/// Why pricing settings are not a valid configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingConfigError {
    /// A product's target margin is below zero.
    #[error("product {product} has a negative target margin {margin}")]
    NegativeMargin {
        /// The product.
        product: ProductId,
        /// Its margin.
        margin: Ratio,
    },
    /// A product's unit name is empty or too long.
    #[error("product {product} needs a unit name of 1 to {UNIT_NAME_LEN_MAX} characters")]
    UnitName {
        /// The product.
        product: ProductId,
    },
    /// The margin floor is below zero.
    #[error("margin floor {floor} is negative")]
    NegativeFloor {
        /// The floor.
        floor: Ratio,
    },
    /// A peak window's multiplier is zero or negative.
    #[error("peak window {window} has multiplier {multiplier}, which must be above zero")]
    WindowMultiplier {
        /// Index of the window in [`PricingSpec::peak_windows`].
        window: usize,
        /// Its multiplier.
        multiplier: Ratio,
    },
    /// A peak window has no days, so it could never apply.
    #[error("peak window {window} has no days")]
    EmptyWindow {
        /// Index of the window in [`PricingSpec::peak_windows`].
        window: usize,
    },
    /// The off-peak multiplier is zero or negative.
    #[error("off-peak multiplier {multiplier} must be above zero")]
    OffPeakMultiplier {
        /// The multiplier.
        multiplier: Ratio,
    },
    /// A tier discount is negative or 1 and above.
    #[error("discount {discount} of tier {tier} is outside [0, 1)")]
    DiscountOutOfRange {
        /// The tier.
        tier: Tier,
        /// Its discount.
        discount: Ratio,
    },
    /// A higher tier has a smaller discount than a lower one.
    #[error("tier discounts must not decrease from basic to pro to enterprise")]
    DiscountsOutOfOrder {
        /// The discounts.
        discounts: TierDiscounts,
    },
    /// The time zone name is not in the time zone database.
    #[error("unknown time zone {name:?}")]
    UnknownTimeZone {
        /// The name.
        name: String,
    },
    /// The quote TTL is zero or longer than [`QUOTE_TTL_MAX`].
    #[error("quote ttl {ttl:?} must be above zero and at most {QUOTE_TTL_MAX:?}")]
    QuoteTtl {
        /// The TTL.
        ttl: Duration,
    },
    /// More products or windows than the limit.
    #[error("{count} {what} is more than the limit of {max}")]
    TooMany {
        /// `products` or `peak windows`.
        what: &'static str,
        /// How many there are.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// A validated pricing configuration.
///
/// Invariant: every rule documented on [`PricingSpec`]'s fields holds, and the time zone is resolved.
#[derive(Clone, PartialEq, Debug)]
pub struct PricingConfig {
    spec: PricingSpec,
    time_zone: TimeZone,
}

impl PricingConfig {
    /// Validates `spec`.
    ///
    /// # Errors
    /// [`PricingConfigError`] naming the first rule `spec` breaks.
    pub fn new(spec: PricingSpec) -> Result<PricingConfig, PricingConfigError> {
        use PricingConfigError as E;
        let too_many = |what, count, max| (count > max).then_some(E::TooMany { what, count, max });
        if let Some(e) = too_many("products", spec.products.len(), PRODUCTS_MAX)
            .or_else(|| too_many("peak windows", spec.peak_windows.len(), PEAK_WINDOWS_MAX))
        {
            return Err(e);
        }
        for (product, pricing) in &spec.products {
            if pricing.target_margin < Ratio::ZERO {
                return Err(E::NegativeMargin { product: product.clone(), margin: pricing.target_margin });
            }
            if pricing.unit.is_empty() || pricing.unit.chars().count() > UNIT_NAME_LEN_MAX {
                return Err(E::UnitName { product: product.clone() });
            }
        }
        if spec.margin_floor < Ratio::ZERO {
            return Err(E::NegativeFloor { floor: spec.margin_floor });
        }
        for (window, w) in spec.peak_windows.iter().enumerate() {
            if w.multiplier <= Ratio::ZERO {
                return Err(E::WindowMultiplier { window, multiplier: w.multiplier });
            }
            if w.days.is_empty() {
                return Err(E::EmptyWindow { window });
            }
        }
        if spec.off_peak_multiplier <= Ratio::ZERO {
            return Err(E::OffPeakMultiplier { multiplier: spec.off_peak_multiplier });
        }
        let discounts = spec.tier_discounts;
        for tier in Tier::ALL {
            let discount = discounts.get(tier);
            if discount < Ratio::ZERO || discount >= Ratio::ONE {
                return Err(E::DiscountOutOfRange { tier, discount });
            }
        }
        if !(discounts.basic <= discounts.pro && discounts.pro <= discounts.enterprise) {
            return Err(E::DiscountsOutOfOrder { discounts });
        }
        if spec.quote_ttl.is_zero() || spec.quote_ttl > QUOTE_TTL_MAX {
            return Err(E::QuoteTtl { ttl: spec.quote_ttl });
        }
        let time_zone =
            TimeZone::get(&spec.time_zone).map_err(|_| E::UnknownTimeZone { name: spec.time_zone.clone() })?;
        Ok(PricingConfig { spec, time_zone })
    }

    /// A sensible configuration in roubles for the Gemini "Nano Banana" image models and Kling 3.0, 2.6 and 1.5
    /// videos of 5 and 10 s (at the worker's costs per second of each model),
    /// read in Moscow time: weekday evening and Friday/Saturday night peaks, a cheaper early morning, tier
    /// discounts 0 / 10 / 20 %, a 20 % margin floor that alerts without refusing, and ten-minute quotes.
    /// The margins are chosen so that no tier at any time falls below the floor.
    #[must_use]
    pub fn example() -> PricingConfig {
        const fn at(hour: i8) -> Time {
            Time::constant(hour, 0, 0, 0)
        }
        let product = |id: &str, cost_kopecks: i64, margin_percent: i64, unit: &str| {
            let pricing = ProductPricing {
                cost: UnitPrice::from_money(Money::from_kopecks(cost_kopecks)),
                target_margin: Ratio::percent(margin_percent),
                unit: unit.to_owned(),
            };
            ProductId::parse(id).map(|id| (id, pricing))
        };
        let products = [
            product("image.nano-banana", 3_20, 100, "image"),
            product("image.nano-banana-pro", 11_00, 80, "image"),
            product("video.kling-2.6.5s", 29_00, 70, "video"),
            product("video.kling-2.6.10s", 58_00, 70, "video"),
            product("video.kling-3.0.5s", 45_00, 70, "video"),
            product("video.kling-3.0.10s", 90_00, 70, "video"),
            product("video.kling-1.5.5s", 20_00, 70, "video"),
            product("video.kling-1.5.10s", 40_00, 70, "video"),
        ]
        .into_iter()
        .collect::<Result<BTreeMap<_, _>, _>>();
        let window = |days, start, end, percent| PeakWindow { days, start, end, multiplier: Ratio::percent(percent) };
        let mon_thu = Weekdays::of(&[Weekday::Monday, Weekday::Tuesday, Weekday::Wednesday, Weekday::Thursday]);
        let fri_sat = Weekdays::of(&[Weekday::Friday, Weekday::Saturday]);
        let spec = products.map(|products| PricingSpec {
            products,
            margin_floor: Ratio::percent(20),
            refuse_below_floor: false,
            time_zone: "Europe/Moscow".to_owned(),
            peak_windows: vec![
                window(mon_thu, at(19), at(23), 120),
                window(fri_sat, at(19), at(2), 125),
                window(Weekdays::EVERY_DAY, at(3), at(7), 90),
            ],
            off_peak_multiplier: Ratio::ONE,
            tier_discounts: TierDiscounts {
                basic: Ratio::ZERO,
                pro: Ratio::percent(10),
                enterprise: Ratio::percent(20),
            },
            quote_ttl: Duration::from_secs(10 * 60),
        });
        match spec.map(PricingConfig::new) {
            Ok(Ok(config)) => config,
            Ok(Err(e)) => panic!("invariant broken: the example pricing configuration is invalid: {e}"),
            Err(e) => panic!("invariant broken: an example product id is invalid: {e}"),
        }
    }

    /// The validated settings.
    #[must_use]
    pub fn spec(&self) -> &PricingSpec {
        &self.spec
    }

    /// The resolved time zone of the peak windows.
    #[must_use]
    pub fn time_zone(&self) -> &TimeZone {
        &self.time_zone
    }

    /// The time multiplier at `at` and the peak window it comes from (`None` off-peak), or `None` when `at`
    /// lies outside the calendar's range.
    #[must_use]
    pub fn multiplier_at(&self, at: Timestamp) -> Option<(Ratio, Option<&PeakWindow>)> {
        let instant = jiff::Timestamp::from_millisecond(at.as_millis()).ok()?;
        let local = self.time_zone.to_datetime(instant);
        Some(match self.spec.peak_windows.iter().find(|w| w.contains(local)) {
            Some(window) => (window.multiplier, Some(window)),
            None => (self.spec.off_peak_multiplier, None),
        })
    }
}
