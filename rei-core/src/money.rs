//! Exact money, rates and the one rounding rule.
//!
//! [`Money`] is an exact, signed amount of roubles held as integer kopecks. Rates that can be fractional
//! (₽ per second, ₽ per image, margins, multipliers, discounts) are [`UnitPrice`] and [`Ratio`], exact decimals.
//! The only way from a fractional value back to money is [`round_to_kopeck`], which names the rounding rule.
//! There is no `From<f64>` anywhere and no operator that can panic or wrap.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};

/// Longest text [`Money::parse`], [`UnitPrice::parse`] and [`Ratio::parse`] accept, so that untrusted input
/// cannot make parsing do unbounded work.
pub const PARSE_LEN_MAX: usize = 32;

/// Kopecks in one rouble.
const MINOR_PER_MAJOR: i64 = 100;

/// An exact amount of roubles, in kopecks. Signed, because postings and adjustments are signed.
///
/// Invariant: every arithmetic operation is checked; an overflow is an error, never a wrap or a panic.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

/// Why a text is not an amount of money (or a rate).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The text is empty or longer than [`PARSE_LEN_MAX`].
    #[error("amount must be 1 to {PARSE_LEN_MAX} characters")]
    Length,
    /// The text is not a plain decimal number such as `123.45`.
    #[error("amount {0:?} is not a decimal number like 123.45")]
    Syntax(String),
    /// More than two digits after the decimal point: kopecks are the smallest unit.
    #[error("amount {0:?} has more than two decimal places")]
    TooPrecise(String),
    /// The value does not fit.
    #[error("amount is out of range")]
    Overflow,
}

impl Money {
    /// Zero roubles.
    pub const ZERO: Money = Money(0);

    /// An amount of kopecks.
    #[must_use]
    pub const fn from_kopecks(kopecks: i64) -> Money {
        Money(kopecks)
    }

    /// Whole roubles.
    ///
    /// # Errors
    /// [`MoneyError::Overflow`] when the amount does not fit.
    pub fn from_rubles(rubles: i64) -> Result<Money, MoneyError> {
        rubles.checked_mul(MINOR_PER_MAJOR).map(Money).ok_or(MoneyError::Overflow)
    }

    /// The amount in kopecks.
    #[must_use]
    pub const fn kopecks(self) -> i64 {
        self.0
    }

    /// The amount as an exact decimal number of kopecks.
    #[must_use]
    pub fn to_kopecks_decimal(self) -> Decimal {
        Decimal::from(self.0)
    }

    /// `true` when the amount is above zero.
    #[must_use]
    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// `true` when the amount is below zero.
    #[must_use]
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// `true` when the amount is zero.
    #[must_use]
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self + other`, or `None` on overflow.
    #[must_use]
    pub const fn checked_add(self, other: Money) -> Option<Money> {
        match self.0.checked_add(other.0) {
            Some(v) => Some(Money(v)),
            None => None,
        }
    }

    /// `self - other`, or `None` on overflow.
    #[must_use]
    pub const fn checked_sub(self, other: Money) -> Option<Money> {
        match self.0.checked_sub(other.0) {
            Some(v) => Some(Money(v)),
            None => None,
        }
    }

    /// `-self`, or `None` on overflow.
    #[must_use]
    pub const fn checked_neg(self) -> Option<Money> {
        match self.0.checked_neg() {
            Some(v) => Some(Money(v)),
            None => None,
        }
    }

    /// `self * n`, or `None` on overflow.
    #[must_use]
    pub const fn checked_mul(self, n: i64) -> Option<Money> {
        match self.0.checked_mul(n) {
            Some(v) => Some(Money(v)),
            None => None,
        }
    }

    /// The smaller of two amounts.
    #[must_use]
    pub fn min(self, other: Money) -> Money {
        Money(self.0.min(other.0))
    }

    /// The larger of two amounts.
    #[must_use]
    pub fn max(self, other: Money) -> Money {
        Money(self.0.max(other.0))
    }

    /// Sum of amounts, or `None` on overflow.
    pub fn checked_sum(items: impl IntoIterator<Item = Money>) -> Option<Money> {
        items.into_iter().try_fold(Money::ZERO, Money::checked_add)
    }

    /// Parses roubles written as `123`, `123.4` or `123.45`, optionally signed.
    ///
    /// # Errors
    /// [`MoneyError`] for empty or overlong text, anything but a plain decimal, more than two decimals,
    /// or a value that does not fit.
    pub fn parse(text: &str) -> Result<Money, MoneyError> {
        let value = parse_decimal(text)?;
        if value.scale() > 2 && value.normalize().scale() > 2 {
            return Err(MoneyError::TooPrecise(text.to_owned()));
        }
        let kopecks = value.checked_mul(Decimal::from(MINOR_PER_MAJOR)).ok_or(MoneyError::Overflow)?.normalize();
        i64::try_from(kopecks).map(Money).map_err(|_| MoneyError::Overflow)
    }
}

impl fmt::Display for Money {
    /// Roubles with exactly two decimals: `123.45`, `-0.05`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let major = abs / MINOR_PER_MAJOR.unsigned_abs();
        let minor = abs % MINOR_PER_MAJOR.unsigned_abs();
        write!(f, "{sign}{major}.{minor:02}")
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({self})")
    }
}

#[cfg(feature = "serde")]
crate::serde_text::via_text!(Money, Money::parse);
#[cfg(feature = "serde")]
crate::serde_text::via_text!(UnitPrice, |text: &str| crate::serde_text::exact_decimal(text)
    .and_then(|rubles| rubles.checked_mul(Decimal::from(MINOR_PER_MAJOR)).ok_or(MoneyError::Overflow))
    .and_then(|kopecks| UnitPrice::from_kopecks(kopecks).ok_or_else(|| MoneyError::Syntax(text.to_owned()))));
#[cfg(feature = "serde")]
crate::serde_text::via_text!(Ratio, |text: &str| crate::serde_text::exact_decimal(text).map(Ratio));

impl FromStr for Money {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Money::parse(s)
    }
}

/// Parses a plain decimal: optional sign, digits, optional point and digits. No exponent, no spaces.
fn parse_decimal(text: &str) -> Result<Decimal, MoneyError> {
    plain_decimal(text, PARSE_LEN_MAX, &['-', '+'])
}

/// Parses a plain decimal of at most `len_max` characters: one optional sign of `signs`, digits, optional
/// point and digits. No exponent, no spaces.
pub(crate) fn plain_decimal(text: &str, len_max: usize, signs: &[char]) -> Result<Decimal, MoneyError> {
    if text.is_empty() || text.len() > len_max {
        return Err(MoneyError::Length);
    }
    let digits = text.strip_prefix(signs).unwrap_or(text);
    let (int_part, frac_part) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !plain(int_part) || frac_part.is_some_and(|f| !plain(f)) {
        return Err(MoneyError::Syntax(text.to_owned()));
    }
    Decimal::from_str_exact(text).map_err(|_| MoneyError::Overflow)
}

/// Rounds an exact number of kopecks to whole kopecks. **This is REI's one rounding rule**: half away from
/// zero ("commercial rounding"), applied wherever a fractional amount becomes money (quotes, metered usage).
///
/// # Errors
/// [`MoneyError::Overflow`] when the result does not fit.
pub fn round_to_kopeck(kopecks: Decimal) -> Result<Money, MoneyError> {
    let rounded = kopecks.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    i64::try_from(rounded).map(Money).map_err(|_| MoneyError::Overflow)
}

/// A price per unit (per second, per image, per request): an exact, non-negative decimal number of kopecks
/// per unit, so that rates below one kopeck are exact. Becomes [`Money`] only through [`round_to_kopeck`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnitPrice(Decimal);

impl UnitPrice {
    /// A whole amount per unit.
    #[must_use]
    pub fn from_money(per_unit: Money) -> UnitPrice {
        UnitPrice(per_unit.to_kopecks_decimal())
    }

    /// An exact number of kopecks per unit; `None` when negative.
    #[must_use]
    pub fn from_kopecks(kopecks_per_unit: Decimal) -> Option<UnitPrice> {
        (!kopecks_per_unit.is_sign_negative() || kopecks_per_unit.is_zero()).then_some(UnitPrice(kopecks_per_unit))
    }

    /// Parses roubles per unit, e.g. `0.015` (1.5 kopecks).
    ///
    /// # Errors
    /// [`MoneyError`] for text that is not a plain non-negative decimal.
    pub fn parse(text: &str) -> Result<UnitPrice, MoneyError> {
        let rubles = parse_decimal(text)?;
        if rubles.is_sign_negative() && !rubles.is_zero() {
            return Err(MoneyError::Syntax(text.to_owned()));
        }
        rubles.checked_mul(Decimal::from(MINOR_PER_MAJOR)).map(UnitPrice).ok_or(MoneyError::Overflow)
    }

    /// Kopecks per unit, exact.
    #[must_use]
    pub fn kopecks(self) -> Decimal {
        self.0
    }

    /// The exact (unrounded) cost of `units` units, in kopecks; `None` on overflow.
    #[must_use]
    pub fn times(self, units: u64) -> Option<Decimal> {
        self.0.checked_mul(Decimal::from(units))
    }
}

impl fmt::Debug for UnitPrice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnitPrice({self})")
    }
}

impl fmt::Display for UnitPrice {
    /// Roubles per unit.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rubles = self.0 / Decimal::from(MINOR_PER_MAJOR);
        write!(f, "{}", rubles.normalize())
    }
}

/// A dimensionless exact factor: a margin (`0.40`), a multiplier (`1.20`) or a discount (`0.10`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ratio(Decimal);

impl Ratio {
    /// Zero.
    pub const ZERO: Ratio = Ratio(Decimal::ZERO);
    /// One.
    pub const ONE: Ratio = Ratio(Decimal::ONE);

    /// A ratio from an exact decimal.
    #[must_use]
    pub const fn new(value: Decimal) -> Ratio {
        Ratio(value)
    }

    /// `percent / 100`, e.g. `Ratio::percent(40)` is 0.40.
    #[must_use]
    pub fn percent(percent: i64) -> Ratio {
        Ratio(Decimal::new(percent, 2))
    }

    /// Parses a plain decimal such as `0.40` or `1.2`.
    ///
    /// # Errors
    /// [`MoneyError`] for text that is not a plain decimal.
    pub fn parse(text: &str) -> Result<Ratio, MoneyError> {
        parse_decimal(text).map(Ratio)
    }

    /// The exact value.
    #[must_use]
    pub const fn value(self) -> Decimal {
        self.0
    }
}

impl fmt::Debug for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ratio({})", self.0.normalize())
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.normalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_accepts_plain_decimals_and_rejects_everything_else() {
        // Proves the parser takes roubles with up to two decimals and refuses any other shape.
        assert_eq!(Money::parse("123.45"), Ok(Money::from_kopecks(12_345)));
        assert_eq!(Money::parse("0.5"), Ok(Money::from_kopecks(50)));
        assert_eq!(Money::parse("-7"), Ok(Money::from_kopecks(-700)));
        assert_eq!(Money::parse("1.50"), Ok(Money::from_kopecks(150)));
        assert_eq!(Money::parse("1.500"), Ok(Money::from_kopecks(150)));
        for bad in ["", "1e5", " 1", "1.", ".5", "abc", "1,5", "--1", "NaN", "1.2.3"] {
            assert!(Money::parse(bad).is_err(), "{bad:?} must be rejected");
        }
        assert_eq!(Money::parse("1.005"), Err(MoneyError::TooPrecise("1.005".into())));
        assert_eq!(Money::parse(&"9".repeat(40)), Err(MoneyError::Length));
        assert_eq!(Money::parse("99999999999999999999"), Err(MoneyError::Overflow));
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        // Proves the named rounding rule: .5 goes away from zero, everything else to the nearest kopeck.
        let r = |s: &str| round_to_kopeck(Decimal::from_str_exact(s).expect("test literal"));
        assert_eq!(r("0.5"), Ok(Money::from_kopecks(1)));
        assert_eq!(r("1.49"), Ok(Money::from_kopecks(1)));
        assert_eq!(r("2.5"), Ok(Money::from_kopecks(3)));
        assert_eq!(r("-2.5"), Ok(Money::from_kopecks(-3)));
    }

    #[test]
    fn unit_price_parses_roubles_per_unit() {
        // Proves a sub-kopeck rate is kept exactly and multiplies without rounding.
        let p = UnitPrice::parse("0.015").expect("valid rate");
        assert_eq!(p.kopecks(), Decimal::from_str_exact("1.5").expect("literal"));
        assert_eq!(p.times(3), Some(Decimal::from_str_exact("4.5").expect("literal")));
        assert!(UnitPrice::parse("-1").is_err());
        assert_eq!(p.to_string(), "0.015");
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(k in any::<i64>()) {
            // Proves every amount prints as text that parses back to the same amount.
            let m = Money::from_kopecks(k);
            let text = m.to_string();
            if text.len() <= PARSE_LEN_MAX {
                prop_assert_eq!(Money::parse(&text), Ok(m));
            }
        }

        #[test]
        fn checked_ops_never_wrap(a in any::<i64>(), b in any::<i64>()) {
            // Proves checked addition agrees with wide arithmetic or refuses.
            let wide = i128::from(a) + i128::from(b);
            match Money::from_kopecks(a).checked_add(Money::from_kopecks(b)) {
                Some(m) => prop_assert_eq!(i128::from(m.kopecks()), wide),
                None => prop_assert!(i64::try_from(wide).is_err()),
            }
        }
    }
}
