//! Pricing: cost-plus prices with a target margin per product, peak/off-peak multipliers by local time window,
//! tier discounts, and quotes that carry a breakdown and an expiry.
//!
//! The formula, in exact decimal kopecks with one rounding at the very end ([`round_to_kopeck`]):
//!
//! ```text
//! cost   = unit cost × units
//! list   = cost × (1 + target margin)
//! timed  = list × time multiplier          (the first matching peak window, else the off-peak multiplier)
//! net    = timed × (1 − tier discount)
//! price  = round_to_kopeck(net)
//! ```
//!
//! A [`Breakdown`] records every step so that `cost + margin + time adjustment − discount + rounding = price`
//! exactly. When the effective margin `(price − cost) / cost` falls below the configured floor, the quote
//! carries a [`MarginAlert`], or is refused when the configuration says so.
//!
//! [`round_to_kopeck`]: crate::money::round_to_kopeck

mod config;
mod quote;
#[cfg(test)]
mod tests;

pub use config::{
    PEAK_WINDOWS_MAX, PRODUCTS_MAX, PeakWindow, PricingConfig, PricingConfigError, PricingSpec, ProductPricing,
    QUOTE_TTL_MAX, Tier, TierDiscounts, UNIT_NAME_LEN_MAX, Weekdays,
};
pub use quote::{Breakdown, MarginAlert, Pricer, Quote, QuoteError, QuoteExpired};
