//! JSON event lines: extraction of key, time and fields never panics.
#![no_main]
use ferrocep_core::event::Extractor;
use ferrocep_core::expr::Fields;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else { return };
    let mut fields = Fields::new();
    fields.slot(&["a".to_string()]);
    fields.slot(&["a".to_string(), "b".to_string()]);
    let ex = Extractor::new(
        &fields,
        Some(vec!["k".to_string()]),
        Some(vec!["ts".to_string()]),
    );
    let mut values = Vec::new();
    let _ = ex.extract(line, &mut values);
});
