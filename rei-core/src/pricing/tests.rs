use std::collections::BTreeMap;
use std::time::Duration;

use jiff::civil::{Time, Weekday};
use proptest::prelude::*;
use rust_decimal::Decimal;

use super::*;
use crate::ids::{ProductId, QuoteId};
use crate::money::{Money, Ratio, UnitPrice};
use crate::time::Timestamp;

fn pid(id: &str) -> ProductId {
    ProductId::parse(id).unwrap()
}

fn dec(text: &str) -> Decimal {
    Decimal::from_str_exact(text).unwrap()
}

/// An instant written as local time with its zone, e.g. `2025-03-04T20:00[Europe/Moscow]`, or in UTC (`...Z`).
fn at(text: &str) -> Timestamp {
    let instant = match text.parse::<jiff::Zoned>() {
        Ok(zoned) => zoned.timestamp(),
        Err(_) => text.parse::<jiff::Timestamp>().unwrap(),
    };
    Timestamp::from_millis(instant.as_millisecond())
}

fn hm(hour: i8, minute: i8) -> Time {
    Time::new(hour, minute, 0, 0).unwrap()
}

/// One product `p` costing `cost_kopecks` per unit with `margin`, everything else default.
fn spec(cost_kopecks: Decimal, margin: Ratio) -> PricingSpec {
    let pricing = ProductPricing {
        cost: UnitPrice::from_kopecks(cost_kopecks).unwrap(),
        target_margin: margin,
        unit: "image".into(),
    };
    PricingSpec { products: BTreeMap::from([(pid("p"), pricing)]), ..PricingSpec::default() }
}

/// A window that covers every instant: 24 hours from midnight on every day.
fn always(multiplier: Ratio) -> PeakWindow {
    PeakWindow { days: Weekdays::EVERY_DAY, start: hm(0, 0), end: hm(0, 0), multiplier }
}

fn quote(spec: &PricingSpec, units: u64, tier: Tier) -> Result<Quote, QuoteError> {
    let pricer = Pricer::new(PricingConfig::new(spec.clone()).unwrap());
    pricer.quote(&pid("p"), units, tier, at("2025-03-04T12:00Z"), QuoteId::from(7))
}

#[test]
fn example_quotes_every_product_off_peak_at_cost_plus_margin() {
    // Proves the example configuration is valid and an off-peak basic quote is exactly cost plus target margin.
    let pricer = Pricer::new(PricingConfig::example());
    let noon = at("2025-03-04T12:00[Europe/Moscow]");
    for (product, price) in [
        ("image.nano-banana", 6_40),
        ("image.nano-banana-pro", 19_80),
        ("video.kling-2.6.5s", 49_30),
        ("video.kling-2.6.10s", 98_60),
        ("video.kling-3.0.5s", 76_50),
        ("video.kling-3.0.10s", 15_300),
        ("video.kling-1.5.5s", 34_00),
        ("video.kling-1.5.10s", 68_00),
    ] {
        let q = pricer.quote(&pid(product), 1, Tier::Basic, noon, QuoteId::from(1)).unwrap();
        assert_eq!(q.price, Money::from_kopecks(price), "{product}");
        assert_eq!((q.breakdown.peak_window, q.margin_alert), (None, None));
        assert_eq!(q.expires_at, noon.plus(Duration::from_secs(600)));
    }
}

#[test]
fn moscow_evening_peak_and_tier_discount_show_in_the_breakdown() {
    // Proves a peak window and a tier discount are applied in order and each step is itemised.
    let pricer = Pricer::new(PricingConfig::example());
    let evening = at("2025-03-04T20:00[Europe/Moscow]");
    let q = pricer.quote(&pid("video.kling-2.6.5s"), 1, Tier::Pro, evening, QuoteId::from(2)).unwrap();
    // 2900 × 1.70 = 4930; × 1.20 = 5916; × 0.90 = 5324.4; rounds to 5324.
    let b = &q.breakdown;
    assert_eq!(q.price, Money::from_kopecks(53_24));
    assert_eq!(b.peak_window, Some(pricer.config().spec().peak_windows[0]));
    assert_eq!(
        (b.cost_total, b.margin_added, b.time_adjustment, b.tier_discount_amount, b.rounding_adjustment),
        (dec("2900"), dec("2030"), dec("986"), dec("591.6"), dec("-0.4"))
    );
    assert_eq!(b.total(), Some(dec("5324")));
}

#[test]
fn a_window_crossing_midnight_belongs_to_the_day_it_starts() {
    // Proves Friday/Saturday 19:00–02:00 covers early Saturday and Sunday but not early Friday or Monday.
    let config = PricingConfig::example();
    let late = config.spec().peak_windows[1];
    let window_at = |text| config.multiplier_at(at(text)).unwrap().1.copied();
    assert_eq!(window_at("2025-03-07T23:30[Europe/Moscow]"), Some(late)); // Friday
    assert_eq!(window_at("2025-03-08T01:59[Europe/Moscow]"), Some(late)); // Saturday
    assert_eq!(window_at("2025-03-09T00:30[Europe/Moscow]"), Some(late)); // Sunday, from Saturday
    assert_eq!(window_at("2025-03-08T02:00[Europe/Moscow]"), None); // end is exclusive
    assert_eq!(window_at("2025-03-07T01:30[Europe/Moscow]"), None); // Thursday did not start it
    assert_eq!(window_at("2025-03-10T01:30[Europe/Moscow]"), None); // Sunday did not start it
    assert_eq!(window_at("2025-03-07T18:59[Europe/Moscow]"), None);
}

#[test]
fn windows_follow_local_time_across_daylight_saving() {
    // Proves windows are read in local wall time: Berlin's 18:00 is 16:00 UTC in summer and 17:00 UTC in winter,
    // the skipped spring hour never matches and both passes of the repeated autumn hour do.
    let peak =
        PeakWindow { days: Weekdays::WORKDAYS, start: hm(18, 0), end: hm(22, 0), multiplier: Ratio::percent(150) };
    let night =
        PeakWindow { days: Weekdays::EVERY_DAY, start: hm(2, 0), end: hm(3, 0), multiplier: Ratio::percent(80) };
    let spec = PricingSpec {
        time_zone: "Europe/Berlin".into(),
        peak_windows: vec![peak, night],
        ..spec(dec("100"), Ratio::ZERO)
    };
    let config = PricingConfig::new(spec).unwrap();
    let multiplier = |text| config.multiplier_at(at(text)).unwrap().0;
    assert_eq!(multiplier("2025-07-01T16:30Z"), Ratio::percent(150)); // 18:30 CEST
    assert_eq!(multiplier("2025-01-07T16:30Z"), Ratio::ONE); // 17:30 CET
    assert_eq!(multiplier("2025-01-07T17:30Z"), Ratio::percent(150)); // 18:30 CET
    assert_eq!(multiplier("2025-03-30T00:59Z"), Ratio::ONE); // 01:59 CET, then clocks jump to 03:00
    assert_eq!(multiplier("2025-03-30T01:00Z"), Ratio::ONE); // 03:00 CEST
    assert_eq!(multiplier("2025-10-26T00:30Z"), Ratio::percent(80)); // 02:30 CEST
    assert_eq!(multiplier("2025-10-26T01:30Z"), Ratio::percent(80)); // 02:30 CET
}

#[test]
fn a_sub_kopeck_rate_is_rounded_once_at_the_end() {
    // Proves fractional kopecks survive every step and only the final amount is rounded, half away from zero.
    let spec = spec(UnitPrice::parse("0.015").unwrap().kopecks(), Ratio::ZERO);
    let one = quote(&spec, 1, Tier::Basic).unwrap();
    assert_eq!((one.price, one.breakdown.rounding_adjustment), (Money::from_kopecks(2), dec("0.5")));
    assert_eq!(quote(&spec, 3, Tier::Basic).unwrap().price, Money::from_kopecks(5));
}

#[test]
fn a_margin_below_the_floor_alerts_or_is_refused() {
    // Proves the floor raises an alert, refuses when configured, and a margin exactly at the floor passes.
    let low = PricingSpec { margin_floor: Ratio::percent(20), ..spec(dec("100"), Ratio::percent(10)) };
    let q = quote(&low, 1, Tier::Basic).unwrap();
    let alert = MarginAlert { effective_margin: Ratio::new(dec("0.1")), floor: Ratio::percent(20) };
    assert_eq!((q.price, q.margin_alert), (Money::from_kopecks(110), Some(alert)));
    let refusing = PricingSpec { refuse_below_floor: true, ..low.clone() };
    assert_eq!(
        quote(&refusing, 1, Tier::Basic),
        Err(QuoteError::MarginBelowFloor {
            product: pid("p"),
            price: Money::from_kopecks(110),
            effective_margin: alert.effective_margin,
            floor: alert.floor
        })
    );
    let at_floor = PricingSpec { refuse_below_floor: true, ..spec(dec("100"), Ratio::percent(20)) };
    assert_eq!(quote(&at_floor, 1, Tier::Basic).unwrap().margin_alert, None);
    let free = PricingSpec { refuse_below_floor: true, ..spec(Decimal::ZERO, Ratio::ZERO) };
    assert_eq!(quote(&free, 1, Tier::Basic).unwrap().price, Money::ZERO);
}

#[test]
fn quote_errors_name_the_problem() {
    // Proves unknown products, zero units, prices too large or too fine to be exact, and out-of-range times are refused.
    let s = spec(dec("100000000000"), Ratio::ZERO);
    let pricer = Pricer::new(PricingConfig::new(s.clone()).unwrap());
    let now = at("2025-03-04T12:00Z");
    assert_eq!(
        pricer.quote(&pid("nope"), 1, Tier::Basic, now, QuoteId::from(1)),
        Err(QuoteError::UnknownProduct { product: pid("nope") })
    );
    assert_eq!(quote(&s, 0, Tier::Basic), Err(QuoteError::ZeroUnits));
    assert_eq!(quote(&s, u64::MAX, Tier::Basic), Err(QuoteError::Overflow { product: pid("p"), units: u64::MAX }));
    // 1e-20 kopecks × 1.0000000001 needs 30 decimal places; rust_decimal would round, so the quote refuses.
    let fine = spec(Decimal::new(1, 20), Ratio::new(Decimal::new(1, 10)));
    assert_eq!(quote(&fine, 1, Tier::Basic), Err(QuoteError::Overflow { product: pid("p"), units: 1 }));
    let far = Timestamp::from_millis(i64::MAX);
    assert_eq!(
        pricer.quote(&pid("p"), 1, Tier::Basic, far, QuoteId::from(1)),
        Err(QuoteError::TimeOutOfRange { at: far })
    );
}

#[test]
fn a_quote_can_be_confirmed_only_before_it_expires() {
    // Proves the expiry instant itself is already too late.
    let q = quote(&spec(dec("100"), Ratio::ZERO), 1, Tier::Basic).unwrap();
    let just_before = Timestamp::from_millis(q.expires_at.as_millis() - 1);
    assert!(q.is_valid_at(just_before) && q.check_confirm(just_before).is_ok());
    assert!(!q.is_valid_at(q.expires_at));
    assert_eq!(
        q.check_confirm(q.expires_at),
        Err(QuoteExpired { quote: q.id, expires_at: q.expires_at, now: q.expires_at })
    );
}

#[test]
fn invalid_settings_are_rejected() {
    // Proves each configuration rule is enforced with an error that names it.
    use PricingConfigError as E;
    let base = spec(dec("100"), Ratio::ZERO);
    let check = |spec: PricingSpec| PricingConfig::new(spec).err();
    let minus = Ratio::percent(-1);
    assert_eq!(check(spec(dec("100"), minus)), Some(E::NegativeMargin { product: pid("p"), margin: minus }));
    let mut unnamed = base.clone();
    unnamed.products.values_mut().for_each(|p| p.unit.clear());
    assert_eq!(check(unnamed), Some(E::UnitName { product: pid("p") }));
    assert_eq!(check(PricingSpec { margin_floor: minus, ..base.clone() }), Some(E::NegativeFloor { floor: minus }));
    let zero_window = PricingSpec { peak_windows: vec![always(Ratio::ZERO)], ..base.clone() };
    assert_eq!(check(zero_window), Some(E::WindowMultiplier { window: 0, multiplier: Ratio::ZERO }));
    let no_days = PeakWindow { days: Weekdays::of(&[]), ..always(Ratio::ONE) };
    assert_eq!(check(PricingSpec { peak_windows: vec![no_days], ..base.clone() }), Some(E::EmptyWindow { window: 0 }));
    assert_eq!(
        check(PricingSpec { off_peak_multiplier: minus, ..base.clone() }),
        Some(E::OffPeakMultiplier { multiplier: minus })
    );
    let full = TierDiscounts { enterprise: Ratio::ONE, ..TierDiscounts::default() };
    assert_eq!(
        check(PricingSpec { tier_discounts: full, ..base.clone() }),
        Some(E::DiscountOutOfRange { tier: Tier::Enterprise, discount: Ratio::ONE })
    );
    let backwards = TierDiscounts { basic: Ratio::percent(10), ..TierDiscounts::default() };
    assert_eq!(
        check(PricingSpec { tier_discounts: backwards, ..base.clone() }),
        Some(E::DiscountsOutOfOrder { discounts: backwards })
    );
    assert_eq!(
        check(PricingSpec { time_zone: "Mars/Olympus".into(), ..base.clone() }),
        Some(E::UnknownTimeZone { name: "Mars/Olympus".into() })
    );
    assert_eq!(
        check(PricingSpec { quote_ttl: Duration::ZERO, ..base.clone() }),
        Some(E::QuoteTtl { ttl: Duration::ZERO })
    );
    let crowded = PricingSpec { peak_windows: vec![always(Ratio::ONE); PEAK_WINDOWS_MAX + 1], ..base };
    assert_eq!(check(crowded), Some(E::TooMany { what: "peak windows", count: 33, max: PEAK_WINDOWS_MAX }));
    assert!(Weekdays::of(&[Weekday::Saturday, Weekday::Sunday]) == Weekdays::WEEKEND);
}

/// Random pricing inputs: cost in kopecks with up to three decimals, margin, multiplier, ordered discounts, floor.
fn setup() -> impl Strategy<Value = PricingSpec> {
    let cost = (0i64..10_000_000, 0u32..=3).prop_map(|(m, s)| Decimal::new(m, s));
    let discounts = prop::array::uniform3(0i64..100).prop_map(|mut d| {
        d.sort_unstable();
        TierDiscounts { basic: Ratio::percent(d[0]), pro: Ratio::percent(d[1]), enterprise: Ratio::percent(d[2]) }
    });
    (cost, 0i64..300, 1i64..300, discounts, 0i64..100).prop_map(|(cost, margin, multiplier, tier_discounts, floor)| {
        PricingSpec {
            peak_windows: vec![always(Ratio::percent(multiplier))],
            tier_discounts,
            margin_floor: Ratio::percent(floor),
            ..spec(cost, Ratio::percent(margin))
        }
    })
}

fn tier() -> impl Strategy<Value = Tier> {
    prop::sample::select(Tier::ALL.to_vec())
}

fn with_cost(spec: &PricingSpec, cost_kopecks: Decimal) -> PricingSpec {
    let mut spec = spec.clone();
    spec.products.values_mut().for_each(|p| p.cost = UnitPrice::from_kopecks(cost_kopecks).unwrap());
    spec
}

proptest! {
    #[test]
    fn breakdown_steps_sum_exactly_to_the_price(spec in setup(), units in 1u64..10_000, tier in tier()) {
        // Proves the itemised steps always reconcile to the quoted price and rounding moves at most half a kopeck.
        let q = quote(&spec, units, tier).unwrap();
        prop_assert_eq!(q.breakdown.total(), Some(q.price.to_kopecks_decimal()));
        prop_assert!(q.breakdown.rounding_adjustment.abs() <= dec("0.5"));
    }

    #[test]
    fn price_never_falls_when_cost_or_units_rise(
        spec in setup(), more_cost in 0i64..1_000_000, units in 1u64..10_000, more_units in 0u64..10_000, tier in tier()
    ) {
        // Proves the price is monotone non-decreasing in unit cost and in units.
        let base = quote(&spec, units, tier).unwrap().price;
        let cost = spec.products[&pid("p")].cost.kopecks();
        let dearer = with_cost(&spec, cost + Decimal::from(more_cost));
        prop_assert!(quote(&dearer, units, tier).unwrap().price >= base);
        prop_assert!(quote(&spec, units + more_units, tier).unwrap().price >= base);
    }

    #[test]
    fn a_margin_below_the_floor_never_passes_silently(spec in setup(), units in 1u64..10_000, tier in tier()) {
        // Proves an alert is raised exactly when the effective margin is below the floor, and refused when configured.
        let q = quote(&spec, units, tier).unwrap();
        let cost = q.breakdown.cost_total;
        let below = !cost.is_zero() && q.price.to_kopecks_decimal() - cost < spec.margin_floor.value() * cost;
        prop_assert_eq!(q.margin_alert.is_some(), below);
        if let Some(alert) = q.margin_alert {
            prop_assert!(alert.effective_margin < alert.floor);
        }
        let refused = quote(&PricingSpec { refuse_below_floor: true, ..spec }, units, tier);
        prop_assert_eq!(matches!(refused, Err(QuoteError::MarginBelowFloor { .. })), below);
    }

    #[test]
    fn a_higher_tier_never_pays_more(spec in setup(), units in 1u64..10_000) {
        // Proves BASIC >= PRO >= ENTERPRISE for the same product, units and time.
        let [basic, pro, enterprise] = Tier::ALL.map(|t| quote(&spec, units, t).unwrap().price);
        prop_assert!(basic >= pro && pro >= enterprise);
    }

    #[test]
    fn the_example_never_sells_below_its_floor(
        minutes in 0i64..10 * 366 * 24 * 60, product in 0usize..4, units in 1u64..100, tier in tier()
    ) {
        // Proves the example's margins clear its 20 % floor in every window, for every tier.
        let pricer = Pricer::new(PricingConfig::example());
        let product = pricer.config().spec().products.keys().nth(product).unwrap().clone();
        let when = Timestamp::from_millis(at("2025-01-01T00:00Z").as_millis() + minutes * 60_000);
        let q = pricer.quote(&product, units, tier, when, QuoteId::from(3)).unwrap();
        prop_assert_eq!(q.margin_alert, None);
    }
}
