//! Writes many variants of the order-timeout spec, one file each, for runs of
//! many patterns over one stream (`ferrocep match --spec DIR/*.json ...`).
//!
//! ```sh
//! cargo run --release -p ferrocep --example many_specs -- 100 /tmp/specs
//! ferrocep match --spec /tmp/specs/*.json --input orders.jsonl
//! ```
//!
//! Spec `i` of `n` (`orders-000` ... ) is the reference job (`create` then
//! `pay` of the same order within 10 minutes, skip past last event) for orders
//! whose amount is in its own band: `type == "create" && amount >= lo &&
//! amount < hi`, the bands splitting 5..500 evenly (`gen_orders.py` draws
//! amounts from 5.00 to 499.99, so no band is empty on its workload and every
//! order falls in exactly one band). With `--threshold`, spec `i` takes every
//! order of at least `lo` instead (`amount >= lo`), so the specs overlap.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let threshold = args.iter().any(|a| a == "--threshold");
    args.retain(|a| a != "--threshold");
    let (n, dir) = match args.as_slice() {
        [n, dir] => (n.parse::<usize>()?, PathBuf::from(dir)),
        _ => return Err("usage: many_specs [--threshold] COUNT DIR".into()),
    };
    std::fs::create_dir_all(&dir)?;
    // The amounts of gen_orders.py: 5.00 ..= 499.99.
    const LOW: f64 = 5.0;
    const HIGH: f64 = 500.0;
    let width = (HIGH - LOW) / n.max(1) as f64;
    for i in 0..n {
        // Both bounds from the same formula, so band i ends where band i+1
        // starts, also after rounding to cents.
        let lo = LOW + i as f64 * width;
        let hi = LOW + (i + 1) as f64 * width;
        let filter = if threshold {
            format!("type == \\\"create\\\" && amount >= {lo:.2}")
        } else {
            format!("type == \\\"create\\\" && amount >= {lo:.2} && amount < {hi:.2}")
        };
        let name = format!("orders-{i:03}");
        let spec = format!(
            r#"{{
  "name": "{name}",
  "key": "order_id",
  "time": {{"field": "ts", "max_out_of_orderness": "0s"}},
  "within": "10m",
  "skip": "skip_past_last_event",
  "stages": [
    {{"name": "create", "where": "{filter}"}},
    {{"name": "pay", "contiguity": "followed_by", "where": "type == \"pay\""}}
  ]
}}
"#
        );
        std::fs::write(dir.join(format!("{name}.json")), spec)?;
    }
    println!("wrote {n} specs to {}", dir.display());
    Ok(())
}
