//! `time.order_by`: the spec's way to give Flink's `EventComparator`. Events
//! of one timestamp are ordered by the values of the listed fields before
//! they are matched, the first field first.
//!
//! Values order as the expression language compares them where it can:
//! numbers numerically whatever their JSON form (`3 == 3.0`), strings by code
//! point, `false` before `true`. Where it cannot (different types, a missing
//! field), the order is by type: `null` (or missing) first, then booleans,
//! numbers, strings, lists and objects; two lists or two objects are equal.
//! The sort is stable: events equal in every field keep their arrival order.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::event::{num_cmp, Extractor, Fields, Value};
use crate::operator::EventComparator;

use super::JsonEvent;

/// The comparator of `paths` (field paths, each as its segments).
pub(crate) fn comparator(paths: &[Vec<String>]) -> EventComparator<JsonEvent> {
    let mut fields = Fields::new();
    let slots: Vec<usize> = paths.iter().map(|p| fields.slot(p)).collect();
    let extractor = Extractor::new(&fields, None, None);
    Arc::new(move |a: &JsonEvent, b: &JsonEvent| {
        let (mut va, mut vb) = (Vec::new(), Vec::new());
        // Events were read as JSON objects: a failure leaves every value
        // missing (`null`), which cannot happen for them.
        let _ = extractor.extract(object_text(a.raw()), &mut va);
        let _ = extractor.extract(object_text(b.raw()), &mut vb);
        for &s in &slots {
            let c = compare(
                va.get(s).unwrap_or(&Value::Null),
                vb.get(s).unwrap_or(&Value::Null),
            );
            if c != Ordering::Equal {
                return c;
            }
        }
        Ordering::Equal
    })
}

/// The event's JSON object: `run` keeps the source position in front of it.
fn object_text(raw: &str) -> &str {
    raw.find('{').map_or(raw, |i| &raw[i..])
}

fn rank(v: &Value<'_>) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Int(_) | Value::Dec(_) => 2,
        Value::Str(_) => 3,
        Value::List(_) => 4,
        Value::Map(_) => 5,
    }
}

/// The total order of the module docs.
pub(crate) fn compare(x: &Value<'_>, y: &Value<'_>) -> Ordering {
    match (x, y) {
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        (Value::Str(a), Value::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
        (Value::Int(_) | Value::Dec(_), Value::Int(_) | Value::Dec(_)) => {
            num_cmp(x, y).unwrap_or(Ordering::Equal)
        }
        _ => rank(x).cmp(&rank(y)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Format, Spec};

    fn event(spec: &Spec, line: &str) -> JsonEvent {
        spec.ingest(line).expect("a good line").event
    }

    fn spec(order_by: &str) -> Spec {
        Spec::from_str(
            &format!(
                "{{\"time\": {{\"field\": \"ts\", \"order_by\": {order_by}}}, \"stages\": [{{\"name\": \"a\"}}]}}"
            ),
            Format::Json,
        )
        .expect("a good spec")
    }

    #[test]
    fn values_order_as_the_expression_language_compares() {
        fn n(t: &str) -> Value<'_> {
            Value::number(t).unwrap()
        }
        assert_eq!(compare(&n("3"), &n("3.0")), Ordering::Equal);
        assert_eq!(compare(&n("2.5"), &n("10")), Ordering::Less);
        assert_eq!(compare(&n("-1"), &n("-1.5")), Ordering::Greater);
        assert_eq!(
            compare(&Value::str("b"), &Value::str("ab")),
            Ordering::Greater
        );
        assert_eq!(
            compare(&Value::Bool(false), &Value::Bool(true)),
            Ordering::Less
        );
        // Nulls first, then by type.
        for v in [Value::Bool(false), n("-5"), Value::str("")] {
            assert_eq!(compare(&Value::Null, &v), Ordering::Less);
            assert_eq!(compare(&v, &Value::Null), Ordering::Greater);
        }
        assert_eq!(compare(&n("99"), &Value::str("1")), Ordering::Less);
    }

    #[test]
    fn fields_in_turn_then_arrival_order() {
        let s = spec(r#"["prio", "who.name"]"#);
        let cmp = s.event_comparator().expect("order_by gives one");
        let lines = [
            r#"{"ts": 1, "prio": 2, "who": {"name": "b"}, "n": 0}"#,
            r#"{"ts": 1, "prio": 1.0, "who": {"name": "z"}, "n": 1}"#,
            r#"{"ts": 1, "who": {"name": "q"}, "n": 2}"#,
            r#"{"ts": 1, "prio": 2, "who": {"name": "a"}, "n": 3}"#,
            r#"{"ts": 1, "prio": 1, "who": {"name": "z"}, "n": 4}"#,
        ];
        let mut events: Vec<JsonEvent> = lines.iter().map(|l| event(&s, l)).collect();
        events.sort_by(|a, b| cmp(a, b));
        let order: Vec<&str> = events.iter().map(|e| e.raw()).collect();
        // Missing prio first; 1.0 and 1 are equal, so arrival order.
        let want: Vec<&str> = [2, 1, 4, 3, 0].iter().map(|&i| lines[i]).collect();
        assert_eq!(order, want);
    }

    #[test]
    fn a_position_in_front_of_the_event_is_skipped() {
        let s = spec(r#""prio""#);
        let cmp = s.event_comparator().unwrap();
        let a = JsonEvent::from_parts("000000000000000a{\"prio\": 2}", &[]);
        let b = JsonEvent::from_parts("0000000000000001{\"prio\": 1}", &[]);
        assert_eq!(cmp(&a, &b), Ordering::Greater);
    }

    #[test]
    fn no_order_by_no_comparator() {
        let s = Spec::from_str(
            r#"{"time": {"field": "ts"}, "stages": [{"name": "a"}]}"#,
            Format::Json,
        )
        .unwrap();
        assert!(s.event_comparator().is_none());
    }
}
#[cfg(test)]
mod operator_tests {
    use super::*;
    use crate::operator::{CepOperator, TimeDomain};
    use crate::output::Collector;
    use crate::spec::{Format, Spec};
    use crate::time::{Timestamp, Watermark};

    /// An event that cannot start a match, for a key without state, is
    /// skipped under bounded out-of-orderness only when nothing can still
    /// tie with it: here `c` (p 1) arrives first but sorts after `a b`
    /// (p 0), so it must be kept (found by a recorded Flink case).
    #[test]
    fn a_tie_that_sorts_later_is_not_skipped() {
        let s = Spec::from_str(
            r#"{"time": {"field": "ts", "order_by": ["p", "q"]}, "stages": [
                {"name": "a", "where": "t == \"a\""},
                {"name": "b", "contiguity": "next", "where": "t == \"b\""},
                {"name": "c", "where": "t == \"c\""}]}"#,
            Format::Json,
        )
        .unwrap();
        let mut op: CepOperator<u8, JsonEvent> =
            CepOperator::new(Arc::new(s.compile().unwrap()), TimeDomain::EventTime);
        op.set_event_comparator(s.event_comparator());
        op.set_bounded_out_of_orderness(std::time::Duration::ZERO);
        let mut sink = Collector::default();
        for l in [
            r#"{"id": 20, "t": "c", "ts": 25, "p": 1}"#,
            r#"{"id": 28, "t": "a", "ts": 25, "p": 0}"#,
            r#"{"id": 29, "t": "b", "ts": 25, "p": 0}"#,
            r#"{"id": 33, "t": "c", "ts": 25, "p": 2.5, "q": "b"}"#,
        ] {
            let e = s.ingest(l).unwrap().event;
            op.process_element(&0, e, Timestamp::from_millis(25), &mut sink);
        }
        op.advance_watermark(Watermark::from_millis(100), &mut sink);
        let m = sink.matches();
        assert_eq!(m.len(), 1);
        let c: Vec<&str> = m[0]
            .iter()
            .filter(|(s, _)| s == "c")
            .flat_map(|(_, e)| e.iter().map(|e| e.raw()))
            .collect();
        assert_eq!(c, [r#"{"id": 20, "t": "c", "ts": 25, "p": 1}"#]);
    }
}
