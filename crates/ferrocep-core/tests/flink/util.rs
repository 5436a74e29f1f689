//! Test utilities mirroring Flink's `org.apache.flink.cep.Event`/`SubEvent`,
//! `utils/NFATestHarness` (`feedRecords`) and `utils/NFATestUtilities`
//! (`comparePatterns`).

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use ferrocep_core::nfa::NfaRunner;
use ferrocep_core::pattern::Pattern;

/// Flink's test `Event(id, name, price)`; `volume` is `Some` for a `SubEvent`
/// (`SubEvent(id, name, price, volume)`), so `subtype(SubEvent.class)` is
/// `where_(Event::is_sub)`. Equality is Flink's: name, price and id (and, for
/// sub events, the volume and the class).
#[derive(Clone, PartialEq)]
pub struct Event {
    pub id: i32,
    pub name: String,
    pub price: f64,
    pub volume: Option<f64>,
}

impl Event {
    /// `new Event(id, name, price)`.
    pub fn new(id: i32, name: &str, price: f64) -> Self {
        Event {
            id,
            name: name.to_string(),
            price,
            volume: None,
        }
    }

    /// `new SubEvent(id, name, price, volume)`.
    pub fn sub(id: i32, name: &str, price: f64, volume: f64) -> Self {
        Event {
            id,
            name: name.to_string(),
            price,
            volume: Some(volume),
        }
    }

    /// `value instanceof SubEvent` (Flink's `subtype(SubEvent.class)`).
    pub fn is_sub(&self) -> bool {
        self.volume.is_some()
    }

    /// `SubEvent.getVolume()`; 0 for a plain event (never asked for one).
    pub fn volume(&self) -> f64 {
        self.volume.unwrap_or(0.0)
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.volume {
            None => write!(f, "Event({}, {}, {:?})", self.id, self.name, self.price),
            Some(v) => write!(
                f,
                "SubEvent({}, {}, {:?}, {:?})",
                self.id, self.name, self.price, v
            ),
        }
    }
}

/// `value.getName().equals(name)`.
pub fn name_is(name: &'static str) -> impl Fn(&Event) -> bool + Send + Sync + 'static {
    move |e: &Event| e.name == name
}

/// Compiles `pattern` (Flink `NFAUtils.compile(pattern, false)`) into a runner
/// with a fresh state and shared buffer.
pub fn runner(pattern: Pattern<Event>) -> NfaRunner<Event> {
    NfaRunner::new(Arc::new(pattern.compile().expect("pattern compiles")))
}

/// One match flattened the way `NFATestHarness.feedRecord` does: the events
/// of every stage, stages in the order of the result map.
pub fn flatten(m: Vec<(String, Vec<Event>)>) -> Vec<Event> {
    m.into_iter().flat_map(|(_, evs)| evs).collect()
}

/// Flink `NFATestHarness.feedRecords`: for every record `advanceTime(ts)` then
/// `process(event, ts)`, collecting the flattened matches.
pub fn feed_records(r: &mut NfaRunner<Event>, input: &[(Event, i64)]) -> Vec<Vec<Event>> {
    let mut out = Vec::new();
    for (e, ts) in input {
        out.extend(r.feed(e.clone(), *ts).into_iter().map(flatten));
    }
    out
}

/// Flink `NFATestUtilities.feedNFA(inputEvents, compile(pattern, false))`.
///
/// Note that Flink's `feedNFA`/`NFATestHarness.forNFA` runs with `noSkip()`
/// whatever the pattern says; the patterns given here have no skip strategy.
pub fn feed_nfa(pattern: Pattern<Event>, input: &[(Event, i64)]) -> Vec<Vec<Event>> {
    feed_records(&mut runner(pattern), input)
}

/// `NFATestUtilities.EventComparator`: by name, then price, then id.
fn event_cmp(a: &Event, b: &Event) -> Ordering {
    a.name
        .cmp(&b.name)
        .then(a.price.total_cmp(&b.price))
        .then(a.id.cmp(&b.id))
}

/// `NFATestUtilities.ListEventComparator`: by size, then element-wise.
fn list_cmp(a: &[Event], b: &[Event]) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| {
        a.iter()
            .zip(b)
            .map(|(x, y)| event_cmp(x, y))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    })
}

fn normalize(mut v: Vec<Vec<Event>>) -> Vec<Vec<Event>> {
    for p in &mut v {
        p.sort_by(event_cmp);
    }
    v.sort_by(|a, b| list_cmp(a, b));
    v
}

/// Flink `NFATestUtilities.comparePatterns`: the matches, each one a list of
/// events, compared as multisets (each list sorted, then the lists sorted).
#[track_caller]
pub fn compare_patterns(actual: Vec<Vec<Event>>, expected: Vec<Vec<Event>>) {
    let actual = normalize(actual);
    let expected = normalize(expected);
    assert_eq!(
        actual,
        expected,
        "\nmatches differ (actual {} vs expected {})",
        actual.len(),
        expected.len()
    );
}

/// The first event of stage `name`, if the match has the stage.
pub fn first_of<'a>(m: &'a [(String, Vec<Event>)], name: &str) -> Option<&'a Event> {
    m.iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, e)| e.first())
}
