//! HTTP ingest bodies: decoding never panics, and every event it returns is
//! one line of valid JSON.
#![no_main]
use ferrocep_runtime::source::http::decode_body;
use libfuzzer_sys::fuzz_target;

const TYPES: [Option<&str>; 4] = [
    None,
    Some("application/json"),
    Some("application/x-ndjson"),
    Some("application/json; charset=utf-8"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else { return };
    let ct = TYPES[usize::from(first) % TYPES.len()];
    if let Ok(events) = decode_body(ct, body) {
        for e in events {
            assert!(!e.text.contains('\n'), "an event spans lines: {:?}", e.text);
            assert!(
                serde_json::from_str::<&serde_json::value::RawValue>(&e.text).is_ok(),
                "not JSON: {:?}",
                e.text
            );
        }
    }
});
