//! The reference Flink job, written against the Rust Pattern API: orders that
//! are created and not paid in time go to the timeout side output.
//!
//! ```sh
//! cargo run --example order_timeout        # runs until Ctrl-C
//! cargo run --example order_timeout -- 9   # stops after 9 events
//! ```
//!
//! A source emits one order event per second, cycling through "user 1
//! creates", "user 2 creates", "user 2 pays". Keyed by user, `create` must be
//! followed right away by `pay` within 1.5 s (a window a little longer than the
//! event spacing; with exactly 1 s the pay lands on the window's edge and Flink
//! times it out). User 2 pays in time; user 1 never pays.

use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, SystemTime};

use ferrocep::operator::{CepOperator, TimeDomain};
use ferrocep::output::{MatchRef, OutputSink};
use ferrocep::pattern::Pattern;
use ferrocep::time::Timestamp;

#[derive(Clone, Debug)]
struct OrderEvent {
    user_id: String,
    kind: &'static str,
}

/// Where a deployment would notify customer service (Flink's `SinkFunction`).
struct PrintSink;

impl OutputSink<String, OrderEvent> for PrintSink {
    fn on_match(&mut self, user: &String, m: &MatchRef<'_, OrderEvent>, _at: Timestamp) {
        let stages: Vec<&str> = m.iter().map(|(stage, _)| stage).collect();
        println!(
            "success: user {user} paid in time ({})",
            stages.join(" -> ")
        );
    }
    fn on_timeout(&mut self, user: &String, m: &MatchRef<'_, OrderEvent>, _at: Timestamp) {
        // The partial match holds what was matched before the window closed.
        let stages: Vec<&str> = m.iter().map(|(stage, _)| stage).collect();
        println!(
            "timeout: user {user} did not pay within 1.5s (matched: {})",
            stages.join(" -> ")
        );
    }
    fn on_late(&mut self, _: &String, _: &OrderEvent, _: Timestamp) {} // none in processing time
}

fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

fn main() {
    let events: Option<u64> = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("a number of events"));

    let pattern = Pattern::<OrderEvent>::begin("create")
        .where_(|e: &OrderEvent| e.kind == "create")
        .next("pay")
        .where_(|e: &OrderEvent| e.kind == "pay")
        .within(Duration::from_millis(1500));
    let nfa = pattern.compile().expect("a valid pattern");
    let mut op = CepOperator::new(Arc::new(nfa), TimeDomain::ProcessingTime);
    let mut sink = PrintSink;

    let cycle = [("1", "create"), ("2", "create"), ("2", "pay")];
    let interval = Duration::from_secs(1);
    let mut next_event = now().saturating_add(interval);
    let mut i = 0u64;
    while events.is_none_or(|n| i < n) {
        // Sleep until the next event or the next timeout, whichever is first,
        // so timeouts are reported on time even when no event comes.
        let wake = op.next_timer().map_or(next_event, |t| t.min(next_event));
        sleep(wake.duration_since(now()));
        let now = now();
        op.advance_processing_time(now, &mut sink);
        if now < next_event {
            continue;
        }
        let (user, kind) = cycle[(i % 3) as usize];
        println!("event:   user {user} {kind}");
        let event = OrderEvent {
            user_id: user.to_string(),
            kind,
        };
        op.process_element(&event.user_id, &event, now, &mut sink);
        next_event = next_event.saturating_add(interval);
        i += 1;
    }
    // Bounded run: wait for the last timeouts.
    while let Some(t) = op.next_timer() {
        sleep(t.duration_since(now()));
        let now = now();
        if now < t {
            continue;
        }
        op.advance_processing_time(now, &mut sink);
        if op.next_timer() == Some(t) {
            break;
        }
    }
}
