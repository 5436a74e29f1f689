//! `condition`: evaluating spec conditions per event.
//!
//! - `spec_ingest/*`: [`Spec::ingest_with`] on one input line: JSON scan,
//!   key and timestamp, every condition evaluated, the event allocated (what
//!   `ferrocep match` does per line before the engine sees it);
//! - `extract/*`: the field extraction alone ([`Extractor::extract`]);
//! - `expr/*`: one compiled [`Expr`] over already extracted values.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferrocep_bench::{order_create_line, ORDER_TIMEOUT_SPEC};
use ferrocep_core::event::{recycle_values, Extractor, Value};
use ferrocep_core::expr::{Expr, Fields};
use ferrocep_core::spec::{Format, Spec};

/// A line with many fields no condition reads (they are scanned and skipped).
const WIDE_LINE: &str = r#"{"order_id":"o-123456","user_id":"u-4242","type":"pay","ts":1700000123456,"amount":123.45,"currency":"EUR","channel":"web","items":[{"sku":"a-1","qty":2},{"sku":"b-7","qty":1}],"shipping":{"country":"DE","zip":"10115","express":false},"coupon":null,"note":"leave at the door, ring twice","session":"4f1c2a9e-77b0-4b1e-9a53-0c2f9d8e1b6a"}"#;

const COMPOUND: &str =
    r#"type == "pay" && amount >= 100.5 && user.tier in ["gold", "platinum"] || retries > 3"#;

fn values_for<'a>(fields: &Fields, by_name: &[(&str, Value<'a>)]) -> Vec<Value<'a>> {
    fields
        .names()
        .iter()
        .map(|n| {
            by_name
                .iter()
                .find(|(k, _)| k == n)
                .map_or(Value::Null, |(_, v)| v.clone())
        })
        .collect()
}

fn bench_condition(c: &mut Criterion) {
    let mut g = c.benchmark_group("condition");
    g.throughput(Throughput::Elements(1));

    let spec = Spec::from_str(ORDER_TIMEOUT_SPEC, Format::Auto).unwrap();
    let mut order_line = String::new();
    order_create_line(&mut order_line, 123_456, 1_700_000_123_456);
    let mut scratch = Vec::new();
    g.bench_function("spec_ingest/order_line", |b| {
        b.iter(|| {
            spec.ingest_with(black_box(&order_line), &mut scratch)
                .unwrap()
        })
    });
    g.bench_function("spec_ingest/wide_line", |b| {
        b.iter(|| {
            spec.ingest_with(black_box(WIDE_LINE), &mut scratch)
                .unwrap()
        })
    });

    let mut fields = Fields::new();
    let compound = Expr::parse(COMPOUND, &mut fields).unwrap();
    let extractor = Extractor::new(
        &fields,
        Some(vec!["order_id".to_string()]),
        Some(vec!["ts".to_string()]),
    );
    let mut buf: Vec<Value<'static>> = Vec::new();
    g.bench_function("extract/wide_line_4_fields", |b| {
        b.iter(|| {
            let mut values = recycle_values(std::mem::take(&mut buf));
            let ts = extractor
                .extract(black_box(WIDE_LINE), &mut values)
                .unwrap()
                .timestamp;
            buf = recycle_values(values);
            ts
        })
    });

    let mut eq_fields = Fields::new();
    let eq = Expr::parse(r#"type == "create""#, &mut eq_fields).unwrap();
    let eq_values = values_for(&eq_fields, &[("type", Value::str("create"))]);
    g.bench_function("expr/string_eq", |b| {
        b.iter(|| eq.test(black_box(&eq_values)))
    });

    let compound_values = values_for(
        &fields,
        &[
            ("type", Value::str("pay")),
            ("amount", Value::number("123.45").unwrap()),
            ("user.tier", Value::str("platinum")),
            ("retries", Value::Int(0)),
        ],
    );
    assert!(compound.test(&compound_values));
    g.bench_function("expr/compound_4_fields", |b| {
        b.iter(|| compound.test(black_box(&compound_values)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench_condition
}
criterion_main!(benches);
