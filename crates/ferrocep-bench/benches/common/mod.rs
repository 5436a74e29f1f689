//! Criterion settings shared by the benches: short warm-up and measurement so
//! that `cargo bench -p ferrocep-bench` stays around a minute.

use std::time::Duration;

use criterion::Criterion;

/// The configuration of every group (command-line flags still override it).
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}
