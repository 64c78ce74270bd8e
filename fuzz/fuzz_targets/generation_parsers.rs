//! What the worker reads from outside: a stored generation request, asset keys, attempt ids, and the Kling and
//! Gemini answers. None may panic, and a request that decodes encodes back to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rei_adapters::{gemini, kling};
use rei_core::generation::{AssetKey, AttemptRef, GenerationRequest};
use rei_core::money::{Money, UnitPrice};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(request) = GenerationRequest::decode(text) {
            assert_eq!(GenerationRequest::decode(&request.encode()), Ok(request), "request round trip");
        }
        if let Ok(key) = AssetKey::parse(text) {
            assert_eq!(key.as_str(), text);
            let _ = key.mime();
        }
        if let Some(attempt) = AttemptRef::parse_external_id(text) {
            assert_eq!(AttemptRef::parse_external_id(&attempt.external_id()), Some(attempt));
        }
    }
    let status = data.first().map_or(200, |b| 200 + u16::from(*b % 4) * 100);
    let body = data.get(1..).unwrap_or_default();
    let _ = gemini::read_answer(body, Money::from_kopecks(320));
    let _ = gemini::read_error(status, body);
    let _ = kling::read_query_answer(status, body, UnitPrice::from_money(Money::from_kopecks(1_150)));
    let _ = kling::read_submit_answer(status, body);
    let _ = kling::parse_callback(body);
});
