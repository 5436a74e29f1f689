//! The companion Flink job, written against the Rust Pattern API: two failed
//! logins of a user in a row within 3 s raise a warning.
//!
//! ```sh
//! cargo run --example login_failures
//! ```
//!
//! This one runs in event time over a fixed list of login events, so its
//! output is always the same:
//!
//! ```text
//! warning: user 1 failed to log in twice within 3s: from 192.168.0.1 at 1000, from 192.168.0.2 at 2000
//! warning: user 1 failed to log in twice within 3s: from 192.168.0.2 at 2000, from 192.168.0.3 at 4000
//! warning: user 2 failed to log in twice within 3s: from 192.168.10.10 at 5000, from 192.168.10.11 at 6000
//! ```

use std::sync::Arc;
use std::time::Duration;

use ferrocep::operator::{CepOperator, TimeDomain};
use ferrocep::output::{MatchRef, OutputSink};
use ferrocep::pattern::Pattern;
use ferrocep::time::{BoundedOutOfOrderness, Timestamp, MAX_WATERMARK};

#[derive(Clone, Debug)]
struct LoginEvent {
    user_id: &'static str,
    ip: &'static str,
    kind: &'static str,
    ts: Timestamp,
}

struct Warnings;

impl OutputSink<&'static str, LoginEvent> for Warnings {
    fn on_match(&mut self, user: &&'static str, m: &MatchRef<'_, LoginEvent>, _: Timestamp) {
        let first = m.events_of("first").next().unwrap();
        let second = m.events_of("second").next().unwrap();
        println!(
            "warning: user {user} failed to log in twice within 3s: from {} at {}, from {} at {}",
            first.ip, first.ts, second.ip, second.ts
        );
    }
    fn on_timeout(&mut self, _: &&'static str, _: &MatchRef<'_, LoginEvent>, _: Timestamp) {}
    fn on_late(&mut self, user: &&'static str, e: &LoginEvent, _: Timestamp) {
        println!("late: user {user} {} at {}", e.kind, e.ts);
    }
}

fn main() {
    let nfa = Pattern::<LoginEvent>::begin("first")
        .where_(|e: &LoginEvent| e.kind == "fail")
        .next("second")
        .where_(|e: &LoginEvent| e.kind == "fail")
        .within(Duration::from_secs(3))
        .compile()
        .expect("a valid pattern");
    let mut op = CepOperator::new(Arc::new(nfa), TimeDomain::EventTime);
    let mut watermarks = BoundedOutOfOrderness::new(Duration::ZERO);
    let mut sink = Warnings;

    let logins = [
        ("1", "192.168.0.1", "fail"),
        ("1", "192.168.0.2", "fail"),
        ("2", "192.168.10.10", "success"),
        ("1", "192.168.0.3", "fail"),
        ("2", "192.168.10.10", "fail"),
        ("2", "192.168.10.11", "fail"),
    ];
    for (i, (user_id, ip, kind)) in logins.into_iter().enumerate() {
        let ts = Timestamp::from_millis(1000 * (i as i64 + 1));
        let event = LoginEvent {
            user_id,
            ip,
            kind,
            ts,
        };
        op.process_element(&event.user_id, &event, ts, &mut sink);
        op.advance_watermark(watermarks.on_event(ts), &mut sink);
    }
    // The input is bounded: time goes to +infinity, as in Flink.
    op.advance_watermark(MAX_WATERMARK, &mut sink);
}
