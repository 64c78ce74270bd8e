//! The [`Pricer`] and what it makes: [`Quote`], [`Breakdown`], [`MarginAlert`].

use rust_decimal::Decimal;

use super::config::{PeakWindow, PricingConfig, Tier};
use crate::ids::{ProductId, QuoteId};
use crate::money::{Money, Ratio, UnitPrice, round_to_kopeck};
use crate::time::Timestamp;

/// Makes quotes from a [`PricingConfig`]. Pure: the time and the quote id come from the caller.
#[derive(Clone, Debug)]
pub struct Pricer {
    config: PricingConfig,
}

/// A price offered to a user, valid until `expires_at`.
///
/// Invariant when made by [`Pricer::quote`]: `breakdown.total() == Some(price)` in kopecks, exactly.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Quote {
    /// The quote's id.
    pub id: QuoteId,
    /// What is sold.
    pub product: ProductId,
    /// How many units, at least one.
    pub units: u64,
    /// The buyer's tier.
    pub tier: Tier,
    /// The price to hold and capture.
    pub price: Money,
    /// The first instant at which the quote can no longer be confirmed.
    pub expires_at: Timestamp,
    /// How the price was reached.
    pub breakdown: Breakdown,
    /// Set when the effective margin is below the configured floor.
    pub margin_alert: Option<MarginAlert>,
}

/// Every step from provider cost to price, in exact (possibly fractional) kopecks, for a bot to show.
///
/// `cost_total + margin_added + time_adjustment − tier_discount_amount + rounding_adjustment = price`.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Breakdown {
    /// Provider cost of one unit.
    pub unit_cost: UnitPrice,
    /// The unit's name (`image`, `video`).
    pub unit: String,
    /// `unit_cost × units`.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_text::decimal"))]
    pub cost_total: Decimal,
    /// The product's target margin.
    pub target_margin: Ratio,
    /// `cost_total × target_margin`.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_text::decimal"))]
    pub margin_added: Decimal,
    /// The time multiplier applied.
    pub time_multiplier: Ratio,
    /// The peak window the multiplier comes from; `None` off-peak.
    pub peak_window: Option<PeakWindow>,
    /// `list × (time_multiplier − 1)`: positive in a peak, negative in a cheap window, zero off-peak.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_text::decimal"))]
    pub time_adjustment: Decimal,
    /// The tier's discount.
    pub tier_discount: Ratio,
    /// The amount the discount takes off, never negative.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_text::decimal"))]
    pub tier_discount_amount: Decimal,
    /// What the one rounding to whole kopecks added (negative when it rounded down), at most half a kopeck.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_text::decimal"))]
    pub rounding_adjustment: Decimal,
}

impl Breakdown {
    /// The sum of the steps, in kopecks; `None` only if the fields were changed to values that overflow.
    #[must_use]
    pub fn total(&self) -> Option<Decimal> {
        self.cost_total
            .checked_add(self.margin_added)?
            .checked_add(self.time_adjustment)?
            .checked_sub(self.tier_discount_amount)?
            .checked_add(self.rounding_adjustment)
    }
}

/// The effective margin of a quote is below the configured floor.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct MarginAlert {
    /// `(price − cost) / cost`, rounded to 28 digits for display.
    pub effective_margin: Ratio,
    /// The configured floor.
    pub floor: Ratio,
}

/// Why a quote could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    /// The product is not in the configuration.
    #[error("unknown product {product}")]
    UnknownProduct {
        /// The product asked for.
        product: ProductId,
    },
    /// Zero units were asked for.
    #[error("a quote needs at least one unit")]
    ZeroUnits,
    /// The price does not fit in exact arithmetic or in [`Money`].
    #[error("the price of {units} x {product} is out of range")]
    Overflow {
        /// The product.
        product: ProductId,
        /// The units asked for.
        units: u64,
    },
    /// The time of the quote lies outside the calendar's range.
    #[error("time {at} is out of range")]
    TimeOutOfRange {
        /// The time.
        at: Timestamp,
    },
    /// The effective margin is below the floor and the configuration refuses such sales.
    #[error("effective margin {effective_margin} of {product} at {price} is below the floor {floor}")]
    MarginBelowFloor {
        /// The product.
        product: ProductId,
        /// The price that would have been quoted.
        price: Money,
        /// `(price − cost) / cost`, rounded for display.
        effective_margin: Ratio,
        /// The configured floor.
        floor: Ratio,
    },
}

/// A quote was confirmed at or after its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("quote {quote} expired at {expires_at}")]
pub struct QuoteExpired {
    /// The quote.
    pub quote: QuoteId,
    /// When it expired.
    pub expires_at: Timestamp,
    /// When confirmation was attempted.
    pub now: Timestamp,
}

impl Quote {
    /// `true` while the quote can be confirmed: strictly before `expires_at`.
    #[must_use]
    pub fn is_valid_at(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }

    /// The check made when the user confirms: the quoted price may be locked only while the quote is valid.
    ///
    /// # Errors
    /// [`QuoteExpired`] at or after `expires_at`.
    pub fn check_confirm(&self, now: Timestamp) -> Result<(), QuoteExpired> {
        if self.is_valid_at(now) {
            Ok(())
        } else {
            Err(QuoteExpired { quote: self.id, expires_at: self.expires_at, now })
        }
    }
}

impl Pricer {
    /// A pricer for `config`.
    #[must_use]
    pub fn new(config: PricingConfig) -> Pricer {
        Pricer { config }
    }

    /// The configuration in use.
    #[must_use]
    pub fn config(&self) -> &PricingConfig {
        &self.config
    }

    /// Prices `units` of `product` for `tier` at time `at`; the quote expires one quote TTL after `at`.
    ///
    /// # Errors
    /// [`QuoteError::ZeroUnits`], [`QuoteError::UnknownProduct`], [`QuoteError::TimeOutOfRange`],
    /// [`QuoteError::Overflow`] when any step would not be exact or the price does not fit, and
    /// [`QuoteError::MarginBelowFloor`] when the margin is below the floor and the configuration refuses.
    pub fn quote(
        &self,
        product: &ProductId,
        units: u64,
        tier: Tier,
        at: Timestamp,
        quote_id: QuoteId,
    ) -> Result<Quote, QuoteError> {
        if units == 0 {
            return Err(QuoteError::ZeroUnits);
        }
        let spec = self.config.spec();
        let pricing =
            spec.products.get(product).ok_or_else(|| QuoteError::UnknownProduct { product: product.clone() })?;
        let (time_multiplier, peak_window) = self.config.multiplier_at(at).ok_or(QuoteError::TimeOutOfRange { at })?;
        let tier_discount = spec.tier_discounts.get(tier);
        let overflow = || QuoteError::Overflow { product: product.clone(), units };

        // Running totals first, each step exact; the breakdown is their differences, so it telescopes to the
        // price by construction.
        let cost_total = mul(pricing.cost.kopecks(), Decimal::from(units)).ok_or_else(overflow)?;
        let list = add(Decimal::ONE, pricing.target_margin.value()).and_then(|f| mul(cost_total, f));
        let list = list.ok_or_else(overflow)?;
        let timed = mul(list, time_multiplier.value()).ok_or_else(overflow)?;
        let net = sub(Decimal::ONE, tier_discount.value()).and_then(|f| mul(timed, f)).ok_or_else(overflow)?;
        let price = round_to_kopeck(net).map_err(|_| overflow())?;
        let step = |to: Decimal, from: Decimal| sub(to, from).ok_or_else(overflow);
        let breakdown = Breakdown {
            unit_cost: pricing.cost,
            unit: pricing.unit.clone(),
            cost_total,
            target_margin: pricing.target_margin,
            margin_added: step(list, cost_total)?,
            time_multiplier,
            peak_window: peak_window.copied(),
            time_adjustment: step(timed, list)?,
            tier_discount,
            tier_discount_amount: step(timed, net)?,
            rounding_adjustment: step(price.to_kopecks_decimal(), net)?,
        };
        assert_eq!(
            breakdown.total(),
            Some(price.to_kopecks_decimal()),
            "invariant broken: the breakdown of exact steps does not reconcile to the price"
        );

        let margin_alert = self.margin_alert(cost_total, price).ok_or_else(overflow)?;
        if let (Some(alert), true) = (margin_alert, spec.refuse_below_floor) {
            return Err(QuoteError::MarginBelowFloor {
                product: product.clone(),
                price,
                effective_margin: alert.effective_margin,
                floor: alert.floor,
            });
        }
        Ok(Quote {
            id: quote_id,
            product: product.clone(),
            units,
            tier,
            price,
            expires_at: at.plus(spec.quote_ttl),
            breakdown,
            margin_alert,
        })
    }

    /// The alert when `(price − cost) / cost < floor`, decided exactly as `price − cost < floor × cost` so that
    /// no division rounds the decision; `None` inside when the margin is fine, outer `None` on overflow.
    fn margin_alert(&self, cost_total: Decimal, price: Money) -> Option<Option<MarginAlert>> {
        if cost_total.is_zero() {
            // Nothing was spent, so any price is an infinite margin.
            return Some(None);
        }
        let floor = self.config.spec().margin_floor;
        let earned = sub(price.to_kopecks_decimal(), cost_total)?;
        if earned >= mul(floor.value(), cost_total)? {
            return Some(None);
        }
        let effective_margin = Ratio::new(earned.checked_div(cost_total)?);
        Some(Some(MarginAlert { effective_margin, floor }))
    }
}

// rust_decimal silently rounds a result that needs more than 28 decimal places or 96 bits of mantissa, which
// would be a second, hidden rounding. These helpers accept a result only when its scale shows nothing was
// dropped, and otherwise report overflow. A zero operand is always exact (rust_decimal may then return the
// other operand, or a plain zero, with its own scale).

fn mul(a: Decimal, b: Decimal) -> Option<Decimal> {
    let r = a.checked_mul(b)?;
    (a.is_zero() || b.is_zero() || r.scale() == a.scale() + b.scale()).then_some(r)
}

fn add(a: Decimal, b: Decimal) -> Option<Decimal> {
    let r = a.checked_add(b)?;
    (a.is_zero() || b.is_zero() || r.scale() == a.scale().max(b.scale())).then_some(r)
}

fn sub(a: Decimal, b: Decimal) -> Option<Decimal> {
    let r = a.checked_sub(b)?;
    (a.is_zero() || b.is_zero() || r.scale() == a.scale().max(b.scale())).then_some(r)
}
