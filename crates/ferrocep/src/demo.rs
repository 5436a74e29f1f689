//! `ferrocep demo`: the reference Flink jobs, built with the Rust Pattern API
//! and run live in processing time.
//!
//! - `order-timeout`: the seed job (`shared/seed/reference-system.md`). An
//!   endless source emits one [`OrderEvent`] per interval, cycling through
//!   "user 1 creates", "user 2 creates", "user 2 pays"; keyed by user, the
//!   pattern `begin("create").where(type == create).next("pay").where(type ==
//!   pay).within(window)` reports successes on the main output and timeouts on
//!   the side output, each as it happens. The default window (1.5 s) exceeds
//!   the event spacing (1 s), so user 2 succeeds and user 1 times out; with the
//!   seed's literal 1 s window the pay arrives exactly at the window's edge and
//!   Flink times user 2 out too.
//! - `login-failures`: the companion job: two failed logins of a user in a
//!   row within 3 s raise a warning.
//!
//! Both run on [`ferrocep_runtime::live::drive`], which fires timeouts on
//! time between events; the clock is injected ([`SystemClock`] for the
//! command, a manual clock for tests, which therefore never sleep).

use std::io::{self, Write};
use std::sync::Arc;

use ferrocep_core::operator::{CepOperator, TimeDomain};
use ferrocep_core::output::{MatchRef, OutputSink};
use ferrocep_core::pattern::Pattern;
use ferrocep_core::time::Timestamp;

use ferrocep_runtime::clock::{Clock, SystemClock};
use ferrocep_runtime::live::{drive, LiveSink, Pace};

use crate::args::parse_duration;
use crate::failure::Failure;

/// `HH:MM:SS.mmm` (UTC) of an epoch-millisecond time.
pub fn clock_time(ms: i64) -> String {
    let day_ms = ms.rem_euclid(86_400_000);
    let (h, m) = (day_ms / 3_600_000, day_ms / 60_000 % 60);
    let (s, milli) = (day_ms / 1000 % 60, day_ms % 1000);
    format!("{h:02}:{m:02}:{s:02}.{milli:03}")
}

/// A duration for people: `80ms`, `1.5s`, `3s`, `10m`.
pub fn human_duration(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else {
        let s = format!("{:.3}", ms as f64 / 1000.0);
        format!("{}s", s.trim_end_matches('0').trim_end_matches('.'))
    }
}

fn check_pace(window: i64, interval: i64) -> Result<(), Failure> {
    if window <= 0 {
        return Err(Failure::usage("--window must be greater than 0"));
    }
    if interval < 0 {
        return Err(Failure::usage("--interval must not be negative"));
    }
    Ok(())
}

fn io_failure(e: io::Error) -> Result<(), Failure> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(Failure::io(format!("writing output: {e}")))
    }
}

// ---------------------------------------------------------------------------
// order-timeout

/// An order event of the seed job (`OrderEvent(userId, type)`), stamped with
/// its arrival time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderEvent {
    /// The user; the stream is keyed by it.
    pub user_id: String,
    /// `create` or `pay`.
    pub kind: String,
    /// Processing time of arrival, epoch ms.
    pub ts: i64,
}

/// The arguments of `ferrocep demo order-timeout`.
#[derive(Clone, Debug, clap::Args)]
pub struct OrderTimeoutArgs {
    /// How long after `create` the `pay` may come.
    #[arg(long, value_parser = parse_duration, default_value = "1500ms", value_name = "DUR")]
    pub window: i64,
    /// Time between two events of the source.
    #[arg(long, value_parser = parse_duration, default_value = "1s", value_name = "DUR")]
    pub interval: i64,
    /// Stop after N events (once pending timeouts have fired); default: run
    /// until interrupted.
    #[arg(long, value_name = "N")]
    pub events: Option<u64>,
}

/// The seed source's `i`-th event: user 1 creates, user 2 creates, user 2
/// pays, and again.
pub fn order_event(i: u64, now: i64) -> (String, OrderEvent) {
    let (user, kind) = match i % 3 {
        0 => ("1", "create"),
        1 => ("2", "create"),
        _ => ("2", "pay"),
    };
    let e = OrderEvent {
        user_id: user.to_string(),
        kind: kind.to_string(),
        ts: now,
    };
    (user.to_string(), e)
}

/// The seed pattern: a `pay` strictly right after a `create` of the same
/// user, within `window_ms`.
pub fn order_timeout_pattern(window_ms: i64) -> Pattern<OrderEvent> {
    Pattern::<OrderEvent>::begin("create")
        .where_(|e: &OrderEvent| e.kind == "create")
        .next("pay")
        .where_(|e: &OrderEvent| e.kind == "pay")
        .within_ms(window_ms)
}

/// Prints successes (main output) and timeouts (side output) as they happen.
#[derive(Debug)]
pub struct OrderPrinter<W: Write> {
    out: W,
    window: i64,
    error: Option<io::Error>,
}

impl<W: Write> OrderPrinter<W> {
    /// A printer writing into `out`; `window` is shown in timeout lines.
    pub fn new(out: W, window: i64) -> Self {
        OrderPrinter {
            out,
            window,
            error: None,
        }
    }

    fn line(&mut self, args: std::fmt::Arguments<'_>) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_fmt(args).and_then(|()| self.out.flush()) {
                self.error = Some(e);
            }
        }
    }
}

impl<W: Write> OutputSink<String, OrderEvent> for OrderPrinter<W> {
    fn on_match(&mut self, key: &String, m: &MatchRef<'_, OrderEvent>, _ts: Timestamp) {
        let created = m.events_of("create").next().map_or(0, |e| e.ts);
        let paid = m.events_of("pay").next().map_or(0, |e| e.ts);
        self.line(format_args!(
            "success: user {key} created at {} paid at {}\n",
            clock_time(created),
            clock_time(paid)
        ));
    }

    fn on_timeout(&mut self, key: &String, m: &MatchRef<'_, OrderEvent>, timeout_at: Timestamp) {
        let created = m.events_of("create").next().map_or(0, |e| e.ts);
        self.line(format_args!(
            "timeout: user {key} order created at {} not paid within {} (timed out at {})\n",
            clock_time(created),
            human_duration(self.window),
            clock_time(timeout_at.as_millis())
        ));
    }

    fn on_late(&mut self, key: &String, e: &OrderEvent, _ts: Timestamp) {
        self.line(format_args!(
            "late: user {key} {} at {}\n",
            e.kind,
            clock_time(e.ts)
        ));
    }
}

impl<W: Write> LiveSink<String, OrderEvent> for OrderPrinter<W> {
    fn arrived(&mut self, key: &String, e: &OrderEvent, now: i64) {
        self.line(format_args!(
            "event:   user {key} {} at {}\n",
            e.kind,
            clock_time(now)
        ));
    }

    fn take_error(&mut self) -> Option<io::Error> {
        self.error.take()
    }
}

/// Runs the order-timeout demo on `clock`, printing into `out`.
pub fn run_order_timeout<C: Clock, W: Write>(
    args: &OrderTimeoutArgs,
    clock: &C,
    out: W,
) -> Result<(), Failure> {
    check_pace(args.window, args.interval)?;
    let nfa = order_timeout_pattern(args.window)
        .compile()
        .map_err(|e| Failure::spec(e.to_string()))?;
    let mut op = CepOperator::new(Arc::new(nfa), TimeDomain::ProcessingTime);
    let mut sink = OrderPrinter::new(out, args.window);
    sink.line(format_args!(
        "order-timeout: one order event every {} (user 1 creates, user 2 creates, user 2 pays, ...); \
         pattern create -next-> pay within {}, keyed by user, processing time{}\n",
        human_duration(args.interval),
        human_duration(args.window),
        if args.events.is_none() { "; Ctrl-C stops" } else { "" }
    ));
    let pace = Pace {
        interval: args.interval,
        events: args.events,
    };
    drive(clock, &mut op, pace, order_event, &mut sink).or_else(io_failure)
}

/// `ferrocep demo order-timeout`.
pub fn order_timeout(args: &OrderTimeoutArgs) -> Result<(), Failure> {
    run_order_timeout(args, &SystemClock, io::stdout().lock())
}

// ---------------------------------------------------------------------------
// login-failures

/// A login attempt (`LoginEvent(userId, ip, type)`), stamped with its arrival
/// time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginEvent {
    /// The user; the stream is keyed by it.
    pub user_id: String,
    /// Where the attempt came from.
    pub ip: String,
    /// `fail` or `success`.
    pub kind: String,
    /// Processing time of arrival, epoch ms.
    pub ts: i64,
}

/// The arguments of `ferrocep demo login-failures`.
#[derive(Clone, Debug, clap::Args)]
pub struct LoginFailuresArgs {
    /// How close the two failures must be.
    #[arg(long, value_parser = parse_duration, default_value = "3s", value_name = "DUR")]
    pub window: i64,
    /// Time between two login events of the source.
    #[arg(long, value_parser = parse_duration, default_value = "1s", value_name = "DUR")]
    pub interval: i64,
    /// Stop after N events (once pending timers have fired); default: run
    /// until interrupted.
    #[arg(long, value_name = "N")]
    pub events: Option<u64>,
}

/// The login source's `i`-th event, from a fixed cycle of six that gives
/// warnings to both users.
pub fn login_event(i: u64, now: i64) -> (String, LoginEvent) {
    const CYCLE: [(&str, &str, &str); 6] = [
        ("1", "192.168.0.1", "fail"),
        ("1", "192.168.0.2", "fail"),
        ("2", "192.168.10.10", "success"),
        ("1", "192.168.0.3", "fail"),
        ("2", "192.168.10.10", "fail"),
        ("2", "192.168.10.11", "fail"),
    ];
    let (user, ip, kind) = CYCLE[(i % 6) as usize];
    let e = LoginEvent {
        user_id: user.to_string(),
        ip: ip.to_string(),
        kind: kind.to_string(),
        ts: now,
    };
    (user.to_string(), e)
}

/// Two failed logins in a row of the same user within `window_ms`.
pub fn login_failures_pattern(window_ms: i64) -> Pattern<LoginEvent> {
    Pattern::<LoginEvent>::begin("first")
        .where_(|e: &LoginEvent| e.kind == "fail")
        .next("second")
        .where_(|e: &LoginEvent| e.kind == "fail")
        .within_ms(window_ms)
}

/// Prints a warning per match (`LoginWarning(userId, ip, type)`).
#[derive(Debug)]
pub struct LoginPrinter<W: Write> {
    out: W,
    window: i64,
    error: Option<io::Error>,
}

impl<W: Write> LoginPrinter<W> {
    /// A printer writing into `out`.
    pub fn new(out: W, window: i64) -> Self {
        LoginPrinter {
            out,
            window,
            error: None,
        }
    }

    fn line(&mut self, args: std::fmt::Arguments<'_>) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_fmt(args).and_then(|()| self.out.flush()) {
                self.error = Some(e);
            }
        }
    }
}

impl<W: Write> OutputSink<String, LoginEvent> for LoginPrinter<W> {
    fn on_match(&mut self, key: &String, m: &MatchRef<'_, LoginEvent>, _ts: Timestamp) {
        let (Some(first), Some(second)) =
            (m.events_of("first").next(), m.events_of("second").next())
        else {
            return;
        };
        self.line(format_args!(
            "warning: user {key}, ip {}, type {}: 2 failed logins in a row within {} \
             (from {} at {}, from {} at {})\n",
            second.ip,
            second.kind,
            human_duration(self.window),
            first.ip,
            clock_time(first.ts),
            second.ip,
            clock_time(second.ts)
        ));
    }

    /// A lone failure that was not followed by another in time: not news.
    fn on_timeout(&mut self, _key: &String, _m: &MatchRef<'_, LoginEvent>, _timeout_at: Timestamp) {
    }

    fn on_late(&mut self, key: &String, e: &LoginEvent, _ts: Timestamp) {
        self.line(format_args!(
            "late: user {key} {} at {}\n",
            e.kind,
            clock_time(e.ts)
        ));
    }
}

impl<W: Write> LiveSink<String, LoginEvent> for LoginPrinter<W> {
    fn arrived(&mut self, key: &String, e: &LoginEvent, now: i64) {
        self.line(format_args!(
            "event:   user {key} {} from {} at {}\n",
            e.kind,
            e.ip,
            clock_time(now)
        ));
    }

    fn take_error(&mut self) -> Option<io::Error> {
        self.error.take()
    }
}

/// Runs the login-failures demo on `clock`, printing into `out`.
pub fn run_login_failures<C: Clock, W: Write>(
    args: &LoginFailuresArgs,
    clock: &C,
    out: W,
) -> Result<(), Failure> {
    check_pace(args.window, args.interval)?;
    let nfa = login_failures_pattern(args.window)
        .compile()
        .map_err(|e| Failure::spec(e.to_string()))?;
    let mut op = CepOperator::new(Arc::new(nfa), TimeDomain::ProcessingTime);
    let mut sink = LoginPrinter::new(out, args.window);
    sink.line(format_args!(
        "login-failures: one login event every {}; pattern fail -next-> fail within {}, \
         keyed by user, processing time{}\n",
        human_duration(args.interval),
        human_duration(args.window),
        if args.events.is_none() {
            "; Ctrl-C stops"
        } else {
            ""
        }
    ));
    let pace = Pace {
        interval: args.interval,
        events: args.events,
    };
    drive(clock, &mut op, pace, login_event, &mut sink).or_else(io_failure)
}

/// `ferrocep demo login-failures`.
pub fn login_failures(args: &LoginFailuresArgs) -> Result<(), Failure> {
    run_login_failures(args, &SystemClock, io::stdout().lock())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrocep_runtime::clock::ManualClock;

    /// 1700000000000 is 22:13:20.000 UTC.
    const T0: i64 = 1_700_000_000_000;

    fn results(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| !l.starts_with("event:") && !l.starts_with("order-timeout:"))
            .filter(|l| !l.starts_with("login-failures:"))
            .collect()
    }

    #[test]
    fn formats() {
        assert_eq!(clock_time(T0), "22:13:20.000");
        assert_eq!(clock_time(T0 + 1_500), "22:13:21.500");
        assert_eq!(human_duration(80), "80ms");
        assert_eq!(human_duration(1500), "1.5s");
        assert_eq!(human_duration(3000), "3s");
        assert_eq!(human_duration(600_000), "10m");
    }

    #[test]
    fn order_timeout_user_2_pays_user_1_times_out() {
        let args = OrderTimeoutArgs {
            window: 1500,
            interval: 1000,
            events: Some(6),
        };
        let clock = ManualClock::new(T0);
        let mut out = Vec::new();
        run_order_timeout(&args, &clock, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            results(&text),
            [
                "timeout: user 1 order created at 22:13:21.000 not paid within 1.5s (timed out at 22:13:22.500)",
                "success: user 2 created at 22:13:22.000 paid at 22:13:23.000",
                "timeout: user 1 order created at 22:13:24.000 not paid within 1.5s (timed out at 22:13:25.500)",
                "success: user 2 created at 22:13:25.000 paid at 22:13:26.000",
            ],
            "{text}"
        );
        // The run ends once no timer is pending: at the latest on the timer of
        // user 2's last window (processing-time timers are at end + 1 ms).
        assert!(
            (T0 + 6_000..=T0 + 6_501).contains(&clock.now_ms()),
            "{}",
            clock.now_ms() - T0
        );
    }

    #[test]
    fn order_timeout_fires_between_events() {
        // Events 10 s apart, window 1.5 s: the timeout comes from the timer,
        // long before the next event.
        let args = OrderTimeoutArgs {
            window: 1500,
            interval: 10_000,
            events: Some(2),
        };
        let clock = ManualClock::new(T0);
        let mut out = Vec::new();
        run_order_timeout(&args, &clock, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                "event:   user 1 create at 22:13:30.000",
                "timeout: user 1 order created at 22:13:30.000 not paid within 1.5s (timed out at 22:13:31.500)",
                "event:   user 2 create at 22:13:40.000",
                "timeout: user 2 order created at 22:13:40.000 not paid within 1.5s (timed out at 22:13:41.500)",
            ],
            "{text}"
        );
    }

    #[test]
    fn seed_literal_window_times_user_2_out_too() {
        // With the seed's 1 s window the pay comes exactly at the edge:
        // `now - start >= window` times the partial match out first.
        let args = OrderTimeoutArgs {
            window: 1000,
            interval: 1000,
            events: Some(3),
        };
        let clock = ManualClock::new(T0);
        let mut out = Vec::new();
        run_order_timeout(&args, &clock, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("success:"), "{text}");
        assert!(text.contains("timeout: user 2"), "{text}");
    }

    #[test]
    fn login_failures_warn_both_users() {
        let args = LoginFailuresArgs {
            window: 3000,
            interval: 1000,
            events: Some(12),
        };
        let clock = ManualClock::new(T0);
        let mut out = Vec::new();
        run_login_failures(&args, &clock, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let warn = "2 failed logins in a row within 3s";
        assert_eq!(
            results(&text),
            [
                format!("warning: user 1, ip 192.168.0.2, type fail: {warn} (from 192.168.0.1 at 22:13:21.000, from 192.168.0.2 at 22:13:22.000)"),
                format!("warning: user 1, ip 192.168.0.3, type fail: {warn} (from 192.168.0.2 at 22:13:22.000, from 192.168.0.3 at 22:13:24.000)"),
                format!("warning: user 2, ip 192.168.10.11, type fail: {warn} (from 192.168.10.10 at 22:13:25.000, from 192.168.10.11 at 22:13:26.000)"),
                format!("warning: user 1, ip 192.168.0.2, type fail: {warn} (from 192.168.0.1 at 22:13:27.000, from 192.168.0.2 at 22:13:28.000)"),
                format!("warning: user 1, ip 192.168.0.3, type fail: {warn} (from 192.168.0.2 at 22:13:28.000, from 192.168.0.3 at 22:13:30.000)"),
                format!("warning: user 2, ip 192.168.10.11, type fail: {warn} (from 192.168.10.10 at 22:13:31.000, from 192.168.10.11 at 22:13:32.000)"),
            ],
            "{text}"
        );
    }

    #[test]
    fn bad_pace_is_refused() {
        let args = OrderTimeoutArgs {
            window: 0,
            interval: 1000,
            events: Some(1),
        };
        let err = run_order_timeout(&args, &ManualClock::new(T0), Vec::new()).unwrap_err();
        assert_eq!(err.code, 2);
        assert!(err.message.contains("--window"), "{}", err.message);
    }
}
