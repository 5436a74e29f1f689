use std::collections::BTreeSet;
use std::sync::Arc;

use ferrocep_core::operator::state::StateCodec;

use super::*;
use crate::engine::{EngineCheckpoint, PatternCheckpoint};
use crate::key::Key;

fn enc(k: &Key) -> Vec<u8> {
    let mut b = Vec::new();
    k.encode(&mut b);
    b
}

fn part(name: &str, up: &[(&Key, &[u8])], del: &[&Key], full: bool) -> PatternCheckpoint {
    PatternCheckpoint {
        name: Arc::from(name),
        version: 1,
        fingerprint: "f".into(),
        meta: vec![2],
        upserts: up.iter().map(|(k, v)| (0, enc(k), v.to_vec())).collect(),
        deletes: del.iter().map(|k| (0, enc(k))).collect(),
        full,
    }
}

/// Feeds records as Kafka would hand them back.
fn replay(p: u16, recs: &[(u64, u64, ChangelogRecord<'_>)]) -> PartitionState {
    let mut r = Replay::new(p);
    for (token, id, rec) in recs.iter().filter(|(_, _, r)| r.partition == p) {
        r.record(
            Some(&rec.key),
            rec.value.as_deref(),
            Some(&header(*token, *id)),
        );
    }
    r.finish()
}

fn tagged(
    rs: Vec<ChangelogRecord<'_>>,
    token: u64,
    id: u64,
) -> Vec<(u64, u64, ChangelogRecord<'_>)> {
    rs.into_iter().map(|r| (token, id, r)).collect()
}

#[test]
fn state_keys_round_trip() {
    let k = enc(&Key::tagged(9, Some("\"o-1\"")));
    let rk = state_key("timeout\u{1f}v2", &k);
    assert_eq!(
        split_state_key(&rk),
        Some(("timeout\u{1f}v2", k.as_slice()))
    );
    assert_eq!(key_partition(&k), Some(9));
    assert_eq!(key_partition(&enc(&Key::new("7"))), None);
    assert_eq!(split_state_key(META_KEY), None);
    assert_eq!(split_state_key(b"kxx"), None);
}

#[test]
fn checkpoints_go_to_their_partitions_and_read_back() {
    let (a, b, c) = (
        Key::tagged(0, Some("\"a\"")),
        Key::tagged(1, Some("\"b\"")),
        Key::tagged(2, Some("\"c\"")),
    );
    let owned: BTreeSet<u16> = [0, 1].into();
    let offsets = vec![
        KafkaOffset {
            topic: "t".into(),
            partition: 0,
            offset: 10,
        },
        KafkaOffset {
            topic: "t".into(),
            partition: 1,
            offset: 20,
        },
        KafkaOffset {
            topic: "u".into(),
            partition: 1,
            offset: 5,
        },
    ];
    let c1 = EngineCheckpoint {
        parts: vec![part(
            "p",
            &[(&a, b"A1"), (&b, b"B1"), (&c, b"C1")],
            &[],
            false,
        )],
        retired: vec![],
    };
    let r1 = records(1, 7, 100, &c1, &owned, &offsets, &[]);
    // c is of a partition not owned: not written. A meta per partition.
    assert_eq!(r1.len(), 4);
    assert!(r1.iter().all(|r| r.partition < 2));
    let mut log = tagged(r1, 7, 1);
    let c2 = EngineCheckpoint {
        parts: vec![part("p", &[(&b, b"B2")], &[&a], false)],
        retired: vec![],
    };
    log.extend(tagged(records(2, 7, 200, &c2, &owned, &offsets, &[]), 7, 2));
    let s0 = replay(0, &log);
    assert!(s0.keys.is_empty(), "a was deleted: {s0:?}");
    let m0 = s0.meta.clone().unwrap();
    assert_eq!((m0.checkpoint, m0.partition), (2, 0));
    assert_eq!(m0.offsets, vec![offsets[0].clone()]);
    let s1 = replay(1, &log);
    assert_eq!(s1.keys, vec![("p".to_string(), enc(&b), b"B2".to_vec())]);
    assert_eq!(s1.meta.unwrap().offsets, offsets[1..].to_vec());
    assert_eq!(s1.partition, 1);
}

#[test]
fn a_checkpoint_cut_short_is_not_taken() {
    let a = Key::tagged(0, Some("1"));
    let b = Key::tagged(0, Some("2"));
    let owned: BTreeSet<u16> = [0].into();
    let c1 = EngineCheckpoint {
        parts: vec![part("p", &[(&a, b"A1")], &[], false)],
        retired: vec![],
    };
    let mut log = tagged(records(1, 7, 0, &c1, &owned, &[], &[]), 7, 1);
    // Writer 7 crashes in checkpoint 2: its key record, no meta.
    let c2 = EngineCheckpoint {
        parts: vec![part("p", &[(&a, b"A2"), (&b, b"B2")], &[], false)],
        retired: vec![],
    };
    let mut cut = tagged(records(2, 7, 0, &c2, &owned, &[], &[]), 7, 2);
    cut.pop();
    log.extend(cut);
    assert_eq!(replay(0, &log).keys[0].2, b"A1");
    // Another writer's checkpoint after it does not take it either.
    let c3 = EngineCheckpoint {
        parts: vec![part("p", &[], &[], false)],
        retired: vec![],
    };
    log.extend(tagged(records(1, 8, 0, &c3, &owned, &[], &[]), 8, 1));
    let s = replay(0, &log);
    assert_eq!(s.keys, vec![("p".to_string(), enc(&a), b"A1".to_vec())]);
    assert_eq!(s.meta.unwrap().writer, format!("{:016x}", 8));
}

#[test]
fn a_full_checkpoint_replaces_and_gone_patterns_drop() {
    let a = Key::tagged(0, Some("1"));
    let b = Key::tagged(0, Some("2"));
    let owned: BTreeSet<u16> = [0].into();
    let c1 = EngineCheckpoint {
        parts: vec![
            part("p", &[(&a, b"A1")], &[], false),
            part("q", &[(&a, b"QA")], &[], false),
        ],
        retired: vec![],
    };
    let mut log = tagged(records(1, 7, 0, &c1, &owned, &[], &[]), 7, 1);
    let c2 = EngineCheckpoint {
        parts: vec![part("p", &[(&b, b"B2")], &[], true)],
        retired: vec![],
    };
    log.extend(tagged(records(2, 7, 0, &c2, &owned, &[], &[]), 7, 2));
    let s = replay(0, &log);
    assert_eq!(s.keys, vec![("p".to_string(), enc(&b), b"B2".to_vec())]);
    assert_eq!(s.patterns(), vec![("p".to_string(), "f".to_string())]);
    // Records without the header, or of another format, are skipped.
    let mut r = Replay::new(0);
    r.record(Some(b"x"), Some(b"y"), None);
    r.record(Some(b"zz"), Some(b"y"), Some(&header(1, 1)));
    r.record(Some(META_KEY), Some(b"not json"), Some(&header(1, 1)));
    assert_eq!(r.skipped, 3);
    assert_eq!(r.finish().meta, None);
}

#[test]
fn partition_metas_ride_in_the_meta_record() {
    let a = Key::tagged(1, Some("1"));
    let owned: BTreeSet<u16> = [0, 1].into();
    let c = EngineCheckpoint {
        parts: vec![part("p", &[(&a, b"A")], &[], false)],
        retired: vec![],
    };
    let metas = vec![crate::tasks::TaskMeta {
        partition: 1,
        patterns: vec![("p".to_string(), vec![0u8, 0xff, 7])],
        outputs: [3, 2, 0, 1],
    }];
    let log = tagged(records(1, 7, 0, &c, &owned, &[], &metas), 7, 1);
    let one = replay(1, &log);
    assert_eq!(one.metas(), vec![("p".to_string(), vec![0, 0xff, 7])]);
    assert_eq!(one.meta.map(|m| m.outputs), Some([3, 2, 0, 1]));
    let zero = replay(0, &log);
    assert!(zero.metas().is_empty());
    assert_eq!(zero.meta.map(|m| m.outputs), Some([0; 4]));
    assert_eq!(unhex(&hex(&[1, 2, 250])), Some(vec![1, 2, 250]));
    assert_eq!(unhex("abc"), None);
    assert_eq!(unhex("zz"), None);
}

fn claim(p: u16, token: u64) -> (u64, u64, ChangelogRecord<'static>) {
    let rec = ChangelogRecord {
        partition: p,
        key: CLAIM_KEY.to_vec(),
        value: Some(b"{}".to_vec().into()),
    };
    (token, 0, rec)
}

/// A zombie (writer 7, which lost partition 0 without knowing) checkpoints
/// after writer 8 claimed the partition: its checkpoint is not taken, and
/// writer 8's checkpoints after it are.
#[test]
fn after_a_claim_only_the_claimant_s_checkpoints_are_taken() {
    let a = Key::tagged(0, Some("1"));
    let b = Key::tagged(0, Some("2"));
    let owned: BTreeSet<u16> = [0].into();
    let cp = |up: &[(&Key, &[u8])]| EngineCheckpoint {
        parts: vec![part("p", up, &[], false)],
        retired: vec![],
    };
    let (first, mine) = (cp(&[(&a, b"A1")]), cp(&[(&b, b"B8")]));
    let mut log = vec![claim(0, 7)];
    log.extend(tagged(records(1, 7, 0, &first, &owned, &[], &[]), 7, 1));
    // Writer 8 gains the partition: its claim, then it reads back A1.
    log.push(claim(0, 8));
    let s = replay(0, &log);
    assert_eq!(s.keys, vec![("p".to_string(), enc(&a), b"A1".to_vec())]);
    // The zombie writes its next checkpoint: not taken.
    let zombie = cp(&[(&a, b"A-zombie"), (&b, b"B-zombie")]);
    log.extend(tagged(records(2, 7, 0, &zombie, &owned, &[], &[]), 7, 2));
    let mut r = Replay::new(0);
    for (token, id, rec) in &log {
        r.record(
            Some(&rec.key),
            rec.value.as_deref(),
            Some(&header(*token, *id)),
        );
    }
    assert_eq!(r.foreign, 1);
    let s = r.finish();
    assert_eq!(s.keys, vec![("p".to_string(), enc(&a), b"A1".to_vec())]);
    assert_eq!(s.meta.as_ref().map(|m| m.checkpoint), Some(1));
    // Writer 8's own delta after it is taken, on top of A1.
    log.extend(tagged(records(1, 8, 0, &mine, &owned, &[], &[]), 8, 1));
    let s = replay(0, &log);
    assert_eq!(
        s.keys,
        vec![
            ("p".to_string(), enc(&a), b"A1".to_vec()),
            ("p".to_string(), enc(&b), b"B8".to_vec()),
        ]
    );
    assert_eq!(s.meta.unwrap().writer, format!("{:016x}", 8));
    // Without claims (a changelog of an older ferrocep) every complete
    // checkpoint is taken.
    let old: Vec<_> = log.iter().filter(|(_, id, _)| *id != 0).cloned().collect();
    assert_eq!(replay(0, &old).meta.unwrap().checkpoint, 1);
    assert_eq!(
        replay(0, &old)
            .keys
            .iter()
            .find(|k| k.1 == enc(&a))
            .unwrap()
            .2,
        b"A-zombie"
    );
}
