//! The live demos, run briefly with a short interval and window: processing
//! time with the real clock, so they only check what cannot be flaky
//! (user 1 never pays, so it always times out; user 2 pays within the window
//! in at least one of two cycles).

use std::time::Duration;

use crate::util::{bin, run_with_timeout, Run};

fn order_timeout_demo() -> Run {
    let mut cmd = bin();
    cmd.args([
        "demo",
        "order-timeout",
        "--events",
        "6",
        "--interval",
        "50ms",
        "--window",
        "80ms",
    ]);
    run_with_timeout(cmd, None, Duration::from_secs(60))
}

#[test]
fn order_timeout_demo_reports_successes_and_timeouts() {
    // User 2's pay comes 50 ms after the create, within 80 ms unless the
    // machine stalls the demo for 30 ms: try a few times before failing.
    let mut run = order_timeout_demo();
    for _ in 0..2 {
        if run.stdout.contains("success: user 2 ") {
            break;
        }
        run = order_timeout_demo();
    }
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("event:")).count(),
        6,
        "{}",
        run.stdout
    );
    assert!(
        lines.iter().any(|l| l.starts_with("success: user 2 ")),
        "{}",
        run.stdout
    );
    // Both of user 1's orders time out, on their timers; user 1 never pays.
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("timeout: user 1 "))
            .count(),
        2,
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("success: user 1"), "{}", run.stdout);
}

#[test]
fn login_failures_demo_warns() {
    let mut cmd = bin();
    cmd.args([
        "demo",
        "login-failures",
        "--events",
        "6",
        "--interval",
        "50ms",
        "--window",
        "1s",
    ]);
    let run = run_with_timeout(cmd, None, Duration::from_secs(60));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let warnings: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(warnings.len(), 3, "{}", run.stdout);
    assert!(
        warnings[0].starts_with("warning: user 1, ip 192.168.0.2, type fail"),
        "{}",
        run.stdout
    );
    assert!(
        warnings.iter().any(|w| w.starts_with("warning: user 2, ")),
        "{}",
        run.stdout
    );
}

#[test]
fn demo_refuses_a_bad_window() {
    let mut cmd = bin();
    cmd.args(["demo", "order-timeout", "--window", "soon", "--events", "1"]);
    let run = run_with_timeout(cmd, None, Duration::from_secs(30));
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("soon"), "{}", run.stderr);
}
