//! Serde support (feature `serde`). Values that could lose precision as JSON numbers travel as text and come
//! back through the same checked parsers as any other input: [`Money`](crate::money::Money) as `"123.45"`,
//! rates and the quote breakdown's exact kopecks as plain decimals, ids as their printed form. A number where
//! text is expected (`123.45`, `100`) is refused, so no float ever becomes money.
//!
//! STYLE.md keeps wire derives off domain types; this feature is the exception an embedder asks for (a bot
//! storing quotes and receipts as JSON), and it is off by default.

use rust_decimal::Decimal;

use crate::money::MoneyError;

/// Longest text [`exact_decimal`] reads: 29 digits, a sign and a point fit with room to spare.
const EXACT_LEN_MAX: usize = 64;

/// Implements `Serialize` as the type's `Display` text and `Deserialize` from a string through `$parse`
/// (`fn(&str) -> Result<Self, impl Display>`); anything but a string is refused.
macro_rules! via_text {
    ($ty:ty, $parse:expr) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                ($parse)(text.as_str()).map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use via_text;

/// Parses an exact plain decimal (`-12.345`): optional sign, digits, optional point and digits, no exponent,
/// at most [`EXACT_LEN_MAX`] characters and 28 decimal places; never rounds.
///
/// # Errors
/// [`MoneyError`] for anything else.
pub(crate) fn exact_decimal(text: &str) -> Result<Decimal, MoneyError> {
    crate::money::plain_decimal(text, EXACT_LEN_MAX, &['-'])
}

/// `#[serde(with = "crate::serde_text::decimal")]` for an exact [`Decimal`] field: a plain decimal string.
pub(crate) mod decimal {
    use rust_decimal::Decimal;

    pub(crate) fn serialize<S: serde::Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(deserializer)?;
        super::exact_decimal(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use crate::ids::{HoldId, JobId, ProductId, QuoteId, TxId, UserId};
    use crate::jobs::{ErrorText, Job, JobEvent, JobState, NewJob, Priority, WorkerId};
    use crate::ledger::{Applied, OpKind, Receipt};
    use crate::money::{Money, Ratio, UnitPrice};
    use crate::pricing::{Pricer, PricingConfig, Quote, Tier};
    use crate::time::Timestamp;

    fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
        value: &T,
    ) -> String {
        let json = serde_json::to_string(value).expect("serialize");
        let back: T = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(&back, value, "{json}");
        json
    }

    #[test]
    fn money_travels_as_a_decimal_string_and_never_as_a_number() {
        // Proves money serialises as "123.45", parses back exactly, and that JSON numbers (floats or integers)
        // and text the money parser refuses are rejected.
        assert_eq!(round_trip(&Money::from_kopecks(12_345)), r#""123.45""#);
        assert_eq!(round_trip(&Money::from_kopecks(-5)), r#""-0.05""#);
        assert_eq!(serde_json::from_str::<Money>(r#""0.1""#).expect("text"), Money::from_kopecks(10));
        for bad in ["123.45", "100", "0.1", r#""1e5""#, r#""1.234""#, r#""""#, "null", r#"" 1""#] {
            assert!(serde_json::from_str::<Money>(bad).is_err(), "{bad} must be refused");
        }
    }

    proptest! {
        #[test]
        fn every_amount_round_trips_exactly(kopecks in any::<i64>()) {
            // Proves the text form of any amount parses back to the same kopecks.
            let money = Money::from_kopecks(kopecks);
            let json = serde_json::to_string(&money).expect("serialize");
            prop_assert_eq!(serde_json::from_str::<Money>(&json).expect("deserialize"), money);
        }

        #[test]
        fn rates_and_ratios_round_trip_exactly(mantissa in 0i64..1_000_000_000_000, scale in 0u32..20) {
            // Proves a rate (roubles per unit) and a ratio of up to 20 decimals come back exactly.
            let d = rust_decimal::Decimal::new(mantissa, scale);
            let rate = UnitPrice::from_kopecks(d).expect("non-negative");
            let json = serde_json::to_string(&rate).expect("serialize");
            prop_assert_eq!(serde_json::from_str::<UnitPrice>(&json).expect("deserialize"), rate);
            let ratio = Ratio::new(d);
            let json = serde_json::to_string(&ratio).expect("serialize");
            prop_assert_eq!(serde_json::from_str::<Ratio>(&json).expect("deserialize"), ratio);
        }
    }

    #[test]
    fn a_quote_with_its_breakdown_and_peak_window_round_trips() {
        // Proves a quote made in a peak window (so every breakdown field is set) serialises and comes back
        // equal, with its price and breakdown amounts as strings.
        let pricer = Pricer::new(PricingConfig::example());
        let friday_night = Timestamp::from_millis(1_795_204_800_000); // 2026-11-20T20:00:00Z, 23:00 in Moscow
        let product = ProductId::parse("video.kling-2.6.5s").expect("id");
        let quote = pricer.quote(&product, 2, Tier::Pro, friday_night, QuoteId::from(7)).expect("quote");
        assert!(quote.breakdown.peak_window.is_some(), "the example list has a Friday night peak");
        let json = round_trip(&quote);
        assert!(json.contains(&format!(r#""price":"{}""#, quote.price)), "{json}");
        assert!(json.contains(r#""tier":"pro""#), "{json}");
        let tampered = json.replace(&format!(r#""price":"{}""#, quote.price), r#""price":110.92"#);
        assert!(serde_json::from_str::<Quote>(&tampered).is_err(), "a float price is refused");
    }

    #[test]
    fn receipts_and_applied_round_trip() {
        // Proves a receipt and the replay flag around it serialise and come back equal.
        let receipt = Receipt {
            tx: TxId::from(42),
            kind: OpKind::RefundToCard,
            user: UserId(7),
            hold: Some(HoldId::from(u128::MAX)),
            amount: Money::from_kopecks(-12_345),
            released: Money::ZERO,
            at: Timestamp::from_millis(1_800_000_000_000),
        };
        let json = round_trip(&Applied { receipt, replayed: true });
        assert!(json.contains(r#""kind":"refund_to_card""#) && json.contains(r#""amount":"-123.45""#), "{json}");
    }

    #[test]
    fn jobs_and_their_states_round_trip() {
        // Proves a running job (worker, deadline, error, provider set) and every state serialise and come
        // back equal, and that a malformed id is refused.
        let t0 = Timestamp::from_millis(1_800_000_000_000);
        let spec = NewJob {
            id: JobId::from(9),
            user: UserId(1),
            product: ProductId::parse("image.nano-banana").expect("id"),
            priority: Priority::High,
            price: Money::from_kopecks(1_500),
            hold: HoldId::from(9),
            max_attempts: 3,
            request: None,
        };
        let mut job = Job::new(spec.clone(), t0).expect("job");
        for event in [JobEvent::Confirm, JobEvent::Enqueue, JobEvent::Start] {
            job.apply(event, t0).expect("move");
        }
        job.lease_owner = Some(WorkerId::parse("w-1").expect("worker"));
        job.lease_deadline = Some(t0.plus(Duration::from_secs(60)));
        job.last_error = Some(ErrorText::new("provider 503"));
        let json = round_trip(&job);
        assert!(json.contains(r#""state":"running""#) && json.contains(r#""priority":"high""#), "{json}");
        round_trip(&spec);
        for state in JobState::ALL {
            assert_eq!(round_trip(&state), format!("\"{state}\""));
        }
        assert!(serde_json::from_str::<JobId>(r#""not-an-id""#).is_err());
        assert!(serde_json::from_str::<WorkerId>(r#""bad worker""#).is_err());
    }
}
