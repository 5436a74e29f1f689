//! Any text given as a pipeline config is either a loaded config or a list
//! of errors, never a panic, read as YAML, as JSON, or sniffed. Pattern
//! paths resolve against an empty directory, so file patterns fail to load
//! (an error, as any other) and inline patterns are parsed and compiled.
#![no_main]
use std::path::Path;

use ferrocep_runtime::config::{parse_str, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let dir = std::env::temp_dir().join("ferrocep-fuzz-pipeline-config-empty");
        for format in [Format::Yaml, Format::Json, Format::Auto] {
            if let Err(errors) = parse_str(text, format, Path::new("fuzz.yaml"), &dir) {
                assert!(!errors.is_empty());
                let _ = errors.to_string();
            }
        }
    }
});
