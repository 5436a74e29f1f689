//! Condition expressions: parsing never panics, and evaluating a parsed
//! expression over an event line never panics.
#![no_main]
use ferrocep_core::event::Extractor;
use ferrocep_core::expr::{Expr, Fields};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (expr, line) = text.split_once('\n').unwrap_or((text, "{}"));
    let mut fields = Fields::new();
    if let Ok(e) = Expr::parse(expr, &mut fields) {
        let ex = Extractor::new(&fields, None, None);
        let mut values = Vec::new();
        if ex.extract(line, &mut values).is_ok() {
            let _ = e.test(&values);
        }
    }
});
