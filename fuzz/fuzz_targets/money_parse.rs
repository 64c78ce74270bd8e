//! Money, rate, id and key parsers: never panic, and whatever parses prints back to text that parses to the
//! same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rei_core::ids::{HoldId, IdempotencyKey};
use rei_core::money::{Money, Ratio, UnitPrice};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(m) = Money::parse(text) {
        assert_eq!(Money::parse(&m.to_string()), Ok(m), "money round trip");
    }
    if let Ok(p) = UnitPrice::parse(text) {
        let _ = p.to_string();
    }
    let _ = Ratio::parse(text);
    if let Ok(h) = HoldId::parse(text) {
        assert_eq!(HoldId::parse(&h.to_string()), Ok(h), "id round trip");
    }
    if let Ok(k) = IdempotencyKey::parse(text) {
        assert_eq!(k.as_str(), text);
    }
});
