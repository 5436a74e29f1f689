//! Any text given as a spec file is either a spec or a `SpecError`, never a
//! panic; a spec that parses also compiles or reports why not.
#![no_main]
use ferrocep_core::spec::{Format, Spec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for format in [Format::Yaml, Format::Json, Format::Auto] {
            if let Ok(spec) = Spec::from_str(text, format) {
                let _ = spec.compile();
            }
        }
    }
});
