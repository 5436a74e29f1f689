//! The checkpoint store on real files in a temporary directory: commits,
//! incremental changes, dropped patterns, key-group scans, the refusals
//! (newer format, corruption, a second open), and SIGKILL during commits.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::*;

fn pat(name: &str, fp: &str, meta: &[u8]) -> PatternRecord {
    PatternRecord {
        name: name.into(),
        fingerprint: fp.into(),
        version: 1,
        meta: meta.to_vec(),
    }
}

fn write<'a>(
    id: u64,
    patterns: &'a [PatternRecord],
    upserts: &'a [KeyState<'a>],
    deletes: &'a [KeyRef<'a>],
    dropped: &'a [&'a str],
    sinks: &'a [(String, Vec<u8>)],
) -> CheckpointWrite<'a> {
    CheckpointWrite {
        id,
        pipeline: "pipe",
        patterns,
        upserts,
        deletes,
        dropped_patterns: dropped,
        source: b"{\"offset\":1}",
        sinks,
    }
}

fn ks<'a>(pattern: &'a str, key_group: u32, key: &'a [u8], state: &'a [u8]) -> KeyState<'a> {
    KeyState {
        pattern,
        key_group,
        key,
        state,
    }
}

type Keys = Vec<(u32, Vec<u8>, Vec<u8>)>;

fn all_keys(store: &Store, pattern: &str) -> Keys {
    let mut out = Vec::new();
    store
        .for_each_key(
            pattern,
            0..ferrocep_core::operator::state::KEY_GROUPS,
            |g, k, v| {
                out.push((g, k.to_vec(), v.to_vec()));
                Ok(())
            },
        )
        .unwrap();
    out
}

#[test]
fn commit_then_load_and_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open(tmp.path()).unwrap();
    assert_eq!(store.load().unwrap(), None);
    let patterns = [pat("orders", "fp1", b"meta1"), pat("pays", "fp2", b"")];
    let up = [
        ks("orders", 5, b"k1", b"s1"),
        ks("orders", 2, b"k2", b"s2"),
        ks("pays", 127, b"", b"s3"),
    ];
    let sinks = vec![("out".to_string(), b"{\"len\":10}".to_vec())];
    let stats = store
        .commit(&write(1, &patterns, &up, &[], &[], &sinks))
        .unwrap();
    assert_eq!(stats.keys_written, 3);
    assert_eq!(stats.keys_deleted, 0);
    assert!(stats.bytes_written > 0);

    let expect = Loaded {
        id: 1,
        pipeline: "pipe".into(),
        format_version: 1,
        patterns: patterns.to_vec(),
        source: b"{\"offset\":1}".to_vec(),
        sinks: sinks.clone(),
    };
    assert_eq!(store.load().unwrap().as_ref(), Some(&expect));
    drop(store);
    let store = Store::open(tmp.path()).unwrap();
    assert_eq!(store.load().unwrap(), Some(expect));
    assert_eq!(store.last_id(), Some(1));
    assert_eq!(
        all_keys(&store, "orders"),
        vec![
            (2, b"k2".to_vec(), b"s2".to_vec()),
            (5, b"k1".to_vec(), b"s1".to_vec())
        ]
    );
    assert_eq!(
        all_keys(&store, "pays"),
        vec![(127, vec![], b"s3".to_vec())]
    );
}

#[test]
fn incremental_commits_match_a_model() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open(tmp.path()).unwrap();
    let patterns = [pat("p", "fp", b"")];
    let names: Vec<Vec<u8>> = (0..50).map(|i| format!("key{i:02}").into_bytes()).collect();
    let mut model: BTreeMap<(u32, Vec<u8>), Vec<u8>> = BTreeMap::new();
    let states: Vec<Vec<u8>> = (0..50).map(|i| vec![i as u8; 10 + i]).collect();

    let up: Vec<KeyState> = (0..50)
        .map(|i| ks("p", (i % 7) as u32, &names[i], &states[i]))
        .collect();
    for u in &up {
        model.insert((u.key_group, u.key.to_vec()), u.state.to_vec());
    }
    store
        .commit(&write(1, &patterns, &up, &[], &[], &[]))
        .unwrap();

    // Change 10, delete 5, delete-and-upsert one (the upsert wins).
    let new_state = b"changed".to_vec();
    let up2: Vec<KeyState> = (0..10)
        .map(|i| ks("p", (i % 7) as u32, &names[i], &new_state))
        .collect();
    let mut del: Vec<KeyRef> = (40..45)
        .map(|i| KeyRef {
            pattern: "p",
            key_group: (i % 7) as u32,
            key: &names[i],
        })
        .collect();
    del.push(KeyRef {
        pattern: "p",
        key_group: 0,
        key: &names[0],
    });
    let stats = store
        .commit(&write(2, &patterns, &up2, &del, &[], &[]))
        .unwrap();
    assert_eq!(stats.keys_written, 10);
    assert_eq!(stats.keys_deleted, 5);
    for u in &up2 {
        model.insert((u.key_group, u.key.to_vec()), u.state.to_vec());
    }
    for d in &del[..5] {
        model.remove(&(d.key_group, d.key.to_vec()));
    }
    let expect: Keys = model
        .iter()
        .map(|((g, k), v)| (*g, k.clone(), v.clone()))
        .collect();
    assert_eq!(all_keys(&store, "p"), expect);
    drop(store);
    let store = Store::open(tmp.path()).unwrap();
    assert_eq!(all_keys(&store, "p"), expect);
}

#[test]
fn dropped_pattern_loses_its_keys_and_can_come_back_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open(tmp.path()).unwrap();
    let both = [pat("a", "fa", b""), pat("b", "fb", b"")];
    let up = [
        ks("a", 1, b"x", b"ax"),
        ks("b", 1, b"x", b"bx"),
        ks("b", 9, b"y", b"by"),
    ];
    store.commit(&write(1, &both, &up, &[], &[], &[])).unwrap();

    // Removing b without saying so is refused, and writes nothing.
    let only_a = [pat("a", "fa", b"")];
    let err = store
        .commit(&write(2, &only_a, &[], &[], &[], &[]))
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("\"b\""), "{err}");
    assert_eq!(store.last_id(), Some(1));

    let stats = store
        .commit(&write(2, &only_a, &[], &[], &["b"], &[]))
        .unwrap();
    assert_eq!(stats.keys_deleted, 2);
    let loaded = store.load().unwrap().unwrap();
    assert_eq!(loaded.patterns, only_a.to_vec());
    assert!(matches!(
        store.for_each_key("b", 0..128, |_, _, _| Ok(())),
        Err(StoreError::Invalid { .. })
    ));
    drop(store);

    // After a reopen: b is still gone, a intact; b comes back empty, then
    // is replaced (dropped and listed) with only the new write's keys.
    let mut store = Store::open(tmp.path()).unwrap();
    assert_eq!(
        all_keys(&store, "a"),
        vec![(1, b"x".to_vec(), b"ax".to_vec())]
    );
    store.commit(&write(3, &both, &[], &[], &[], &[])).unwrap();
    assert_eq!(all_keys(&store, "b"), vec![]);
    store
        .commit(&write(4, &both, &[ks("b", 3, b"z", b"bz")], &[], &[], &[]))
        .unwrap();
    let replaced = [pat("a", "fa", b""), pat("b", "fb2", b"")];
    store
        .commit(&write(
            5,
            &replaced,
            &[ks("b", 4, b"w", b"bw")],
            &[],
            &["b"],
            &[],
        ))
        .unwrap();
    assert_eq!(
        all_keys(&store, "b"),
        vec![(4, b"w".to_vec(), b"bw".to_vec())]
    );
    drop(store);
    let store = Store::open(tmp.path()).unwrap();
    assert_eq!(
        all_keys(&store, "b"),
        vec![(4, b"w".to_vec(), b"bw".to_vec())]
    );
    assert_eq!(store.load().unwrap().unwrap().patterns, replaced.to_vec());
}

#[test]
fn key_group_ranges_scan_exactly_their_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open(tmp.path()).unwrap();
    let patterns = [pat("a", "f", b""), pat("b", "f", b"")];
    let keys: Vec<Vec<u8>> = (0..3).map(|i| vec![b'k', i]).collect();
    let mut up = Vec::new();
    for g in 0..128 {
        for k in &keys {
            up.push(ks("a", g, k, b"a"));
            up.push(ks("b", g, k, b"b"));
        }
    }
    store
        .commit(&write(1, &patterns, &up, &[], &[], &[]))
        .unwrap();
    let mut seen = Vec::new();
    let n = store
        .for_each_key("a", 10..20, |g, k, v| {
            assert_eq!(v, b"a");
            seen.push((g, k.to_vec()));
            Ok(())
        })
        .unwrap();
    assert_eq!(n, 30);
    let expect: Vec<(u32, Vec<u8>)> = (10..20)
        .flat_map(|g| keys.iter().map(move |k| (g, k.clone())))
        .collect();
    assert_eq!(seen, expect);
    assert_eq!(
        store.for_each_key("b", 127..128, |_, _, _| Ok(())).unwrap(),
        3
    );
    assert_eq!(store.for_each_key("b", 5..5, |_, _, _| Ok(())).unwrap(), 0);
    assert!(matches!(
        store.for_each_key("a", 0..129, |_, _, _| Ok(())),
        Err(StoreError::Invalid { .. })
    ));
    // A callback's error stops the scan and says where.
    let err = store
        .for_each_key("a", 7..8, |_, _, _| Err("bad blob".into()))
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Restore { key_group: 7, pattern, .. } if pattern == "a"),
        "{err}"
    );
    // Invalid writes write nothing.
    for bad in [
        write(1, &patterns, &[], &[], &[], &[]),
        write(2, &patterns, &[ks("c", 1, b"k", b"")], &[], &[], &[]),
        write(2, &patterns, &[ks("a", 128, b"k", b"")], &[], &[], &[]),
    ] {
        assert!(matches!(
            store.commit(&bad),
            Err(StoreError::Invalid { .. })
        ));
    }
    assert_eq!(store.last_id(), Some(1));
}

#[test]
fn a_newer_format_is_refused_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    drop(store);
    let format = tmp.path().join("state").join("FORMAT");
    std::fs::write(&format, layout::format_file_text(2)).unwrap();
    let err = Store::open(tmp.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "data directory {} was written by a newer ferrocep (format 2, this one reads up to 1)",
            tmp.path().display()
        )
    );

    // The same when only the meta table says so.
    std::fs::write(&format, layout::format_file_text(1)).unwrap();
    {
        let db = fjall::Database::builder(tmp.path().join("state").join("fjall"))
            .open()
            .unwrap();
        let meta = db
            .keyspace(layout::TABLE_META, fjall::KeyspaceCreateOptions::default)
            .unwrap();
        meta.insert(layout::META_FORMAT_VERSION, 3u32.to_le_bytes())
            .unwrap();
        meta.insert(layout::META_CHECKPOINT_ID, 1u64.to_le_bytes())
            .unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let err = Store::open(tmp.path()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NewerFormat {
                found: 3,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_foreign_directory_is_not_taken_for_a_fresh_store() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("state")).unwrap();
    std::fs::write(tmp.path().join("state").join("data.bin"), b"x").unwrap();
    let err = Store::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    std::fs::write(tmp.path().join("state").join("FORMAT"), b"garbage").unwrap();
    let err = Store::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[test]
fn a_second_open_is_refused_while_the_first_lives() {
    let tmp = tempfile::tempdir().unwrap();
    let first = Store::open(tmp.path()).unwrap();
    let err = Store::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("in use by another ferrocep process"),
        "{err}"
    );
    drop(first);
    Store::open(tmp.path()).unwrap();
}

fn largest_file(dir: &Path, skip_journals: bool) -> Option<(std::path::PathBuf, u64)> {
    let mut best: Option<(std::path::PathBuf, u64)> = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let m = e.metadata().ok()?;
        let cand = if m.is_dir() {
            largest_file(&e.path(), skip_journals)
        } else if skip_journals && e.path().extension().is_some_and(|x| x == "jnl") {
            None
        } else {
            Some((e.path(), m.len()))
        };
        if let Some(c) = cand {
            if best.as_ref().is_none_or(|b| c.1 > b.1) {
                best = Some(c);
            }
        }
    }
    best
}

/// Opens, loads and reads every key; `Ok` only if all of it worked.
fn open_and_read_all(dir: &Path) -> Result<(Option<Loaded>, u64), StoreError> {
    let store = Store::open(dir)?;
    let loaded = store.load()?;
    let mut n = 0;
    if let Some(l) = &loaded {
        for p in &l.patterns {
            n += store.for_each_key(&p.name, 0..128, |_, _, _| Ok(()))?;
        }
    }
    Ok((loaded, n))
}

#[test]
fn corrupt_journal_bytes_give_an_error_not_a_panic() {
    corrupt_bytes_give_an_error_not_a_panic(false);
}

#[test]
fn corrupt_table_bytes_give_an_error_not_a_panic() {
    corrupt_bytes_give_an_error_not_a_panic(true);
}

fn corrupt_bytes_give_an_error_not_a_panic(flush: bool) {
    let tmp = tempfile::tempdir().unwrap();
    {
        let mut store = Store::open(tmp.path()).unwrap();
        let patterns = [pat("p", "f", b"")];
        let keys: Vec<Vec<u8>> = (0..2000u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let state = vec![0x5a; 300];
        let up: Vec<KeyState> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| ks("p", (i % 128) as u32, k, &state))
            .collect();
        store
            .commit(&write(1, &patterns, &up, &[], &[], &[]))
            .unwrap();
        store
            .commit(&write(2, &patterns, &up[..100], &[], &[], &[]))
            .unwrap();
        if flush {
            store.flush_tables();
        }
    }
    let (file, len) = largest_file(&tmp.path().join("state"), flush).unwrap();
    // The middle of the written data (a journal is preallocated past it).
    let data = std::fs::read(&file).unwrap();
    let used = data
        .iter()
        .rposition(|&b| b != 0)
        .map_or(len as usize, |p| p + 1);
    let mut bad = data.clone();
    let mid = used / 2;
    for b in &mut bad[mid..mid + 64] {
        *b = !*b;
    }
    std::fs::write(&file, &bad).unwrap();
    let got = std::panic::catch_unwind(|| open_and_read_all(tmp.path()));
    match got {
        Err(_) => panic!("the store panicked on a corrupt {}", file.display()),
        Ok(Ok((loaded, n))) => panic!(
            "a corrupt {} was read as a checkpoint ({:?}, {n} keys)",
            file.display(),
            loaded.map(|l| l.id)
        ),
        Ok(Err(e)) => {
            eprintln!("corrupt {}: {e}", file.display());
            assert!(
                matches!(e, StoreError::Corrupt { .. } | StoreError::Engine { .. }),
                "{e}"
            );
            assert!(
                e.to_string().contains(&tmp.path().display().to_string()),
                "{e}"
            );
        }
    }
}

// --- crash simulation ---------------------------------------------------

const CRASH_ENV: &str = "FERROCEP_STORE_CRASH_DIR";
const CRASH_KEYS: usize = 400;

/// Not a test on its own: with `FERROCEP_STORE_CRASH_DIR` set, the child
/// of [`sigkill_during_commits_leaves_the_last_complete_checkpoint`]. Each
/// checkpoint `i` rewrites every `k*` key with state `i`, deletes `gone{i-1}`
/// and writes `gone{i}`, and sets the source and the sink to `i`; the
/// `static*` keys are written once. It commits until it is killed.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_ENV) else {
        return;
    };
    let mut store = Store::open(Path::new(&dir)).unwrap();
    let mut id = store.last_id().unwrap_or(0);
    let patterns = [pat("p", "f", b"")];
    let keys: Vec<Vec<u8>> = (0..CRASH_KEYS)
        .map(|i| format!("k{i}").into_bytes())
        .collect();
    let statics: Vec<Vec<u8>> = (0..CRASH_KEYS)
        .map(|i| format!("static{i}").into_bytes())
        .collect();
    loop {
        id += 1;
        let mut state = vec![0u8; 2048];
        state[..8].copy_from_slice(&id.to_le_bytes());
        let gone_old = format!("gone{}", id - 1).into_bytes();
        let gone_new = format!("gone{id}").into_bytes();
        let mut up: Vec<KeyState> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| ks("p", (i % 128) as u32, k, &state))
            .collect();
        up.push(ks("p", 0, &gone_new, &state));
        if id == 1 {
            up.extend(statics.iter().map(|k| ks("p", 64, k, b"static")));
        }
        let del = [KeyRef {
            pattern: "p",
            key_group: 0,
            key: &gone_old,
        }];
        let source = id.to_string().into_bytes();
        let sinks = vec![("out".to_string(), id.to_string().into_bytes())];
        store
            .commit(&CheckpointWrite {
                id,
                pipeline: "crash",
                patterns: &patterns,
                upserts: &up,
                deletes: &del,
                dropped_patterns: &[],
                source: &source,
                sinks: &sinks,
            })
            .unwrap();
    }
}

fn check_crashed_store(dir: &Path) -> u64 {
    let store = Store::open(dir).unwrap();
    let Some(l) = store.load().unwrap() else {
        return 0;
    };
    let id = l.id;
    assert_eq!(l.source, id.to_string().into_bytes());
    assert_eq!(
        l.sinks,
        vec![("out".to_string(), id.to_string().into_bytes())]
    );
    let mut ks = 0;
    let mut statics = 0;
    let mut gone = Vec::new();
    store
        .for_each_key("p", 0..128, |_, k, v| {
            if k.starts_with(b"static") {
                assert_eq!(v, b"static");
                statics += 1;
            } else {
                assert_eq!(v.len(), 2048);
                assert_eq!(u64::from_le_bytes(v[..8].try_into().unwrap()), id, "{k:?}");
                if k.starts_with(b"gone") {
                    gone.push(k.to_vec());
                } else {
                    ks += 1;
                }
            }
            Ok(())
        })
        .unwrap();
    assert_eq!((ks, statics), (CRASH_KEYS, CRASH_KEYS));
    assert_eq!(gone, vec![format!("gone{id}").into_bytes()]);
    id
}

#[test]
fn sigkill_during_commits_leaves_the_last_complete_checkpoint() {
    use rand::Rng as _;
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    let mut last = 0;
    for round in 0..4 {
        let mut child = std::process::Command::new(&exe)
            .args([
                "checkpoint::tests::crash_child",
                "--exact",
                "--test-threads=1",
            ])
            .env(CRASH_ENV, tmp.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(400..1600)));
        child.kill().unwrap();
        child.wait().unwrap();
        let id = check_crashed_store(tmp.path());
        eprintln!("round {round}: killed; checkpoint {id} complete");
        assert!(id >= last, "round {round}: checkpoint {id} after {last}");
        last = id;
    }
    assert!(last > 0, "the child never completed a checkpoint");
}

/// A torn write at the storage layer: the journal holds checkpoint 3 whole
/// and only part of checkpoint 4 (the crash came while 4 was being written,
/// so `LAST` still says 3). At every cut of 4's bytes the store opens with
/// checkpoint 3, whole: its source position, its sinks and every key as 3
/// wrote it.
#[test]
fn a_torn_commit_leaves_the_previous_checkpoint_whole() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("data");
    let pats = [pat("p", "f", b"m")];
    let state =
        |id: u64, i: u32| format!("state {i} of checkpoint {id} {}", "x".repeat(200)).into_bytes();
    let keys: Vec<Vec<u8>> = (0..300u32)
        .map(|i| format!("key-{i}").into_bytes())
        .collect();
    let commit = |store: &mut Store, id: u64| {
        let states: Vec<Vec<u8>> = (0..300u32).map(|i| state(id, i)).collect();
        let ups: Vec<KeyState> = keys
            .iter()
            .zip(&states)
            .enumerate()
            .map(|(i, (k, v))| ks("p", i as u32 % 128, k, v))
            .collect();
        let sinks = vec![("out".to_string(), format!("{id}").into_bytes())];
        store
            .commit(&write(id, &pats, &ups, &[], &[], &sinks))
            .unwrap();
    };
    let journal = |dir: &Path| -> std::path::PathBuf {
        std::fs::read_dir(dir.join("state/fjall"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "jnl"))
            .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .expect("a journal file")
    };
    {
        let mut store = Store::open(&dir).unwrap();
        for id in 1..=3 {
            commit(&mut store, id);
        }
    }
    // A reopen trims the journal (preallocated while open) to what it holds.
    drop(Store::open(&dir).unwrap());
    let j = journal(&dir);
    let len3 = std::fs::metadata(&j).unwrap().len();
    let last3 = std::fs::read(dir.join("state/LAST")).unwrap();
    {
        let mut store = Store::open(&dir).unwrap();
        commit(&mut store, 4);
    }
    drop(Store::open(&dir).unwrap());
    let j4 = journal(&dir);
    let after4 = std::fs::read(&j4).unwrap();
    assert_eq!(j4, j, "checkpoint 4 went to another journal file");
    assert!(after4.len() as u64 > len3 + 1000);
    let saved = base.path().join("saved");
    copy_dir(&dir, &saved);
    for cut in [
        len3 + 1,
        len3 + 17,
        (len3 + after4.len() as u64) / 2,
        after4.len() as u64 - 1,
    ] {
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(&saved, &dir);
        let f = std::fs::OpenOptions::new().write(true).open(&j).unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        std::fs::write(dir.join("state/LAST"), &last3).unwrap();
        let store = Store::open(&dir).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let loaded = store.load().unwrap().expect("a checkpoint");
        assert_eq!(loaded.id, 3, "cut at {cut}");
        assert_eq!(loaded.sinks, vec![("out".to_string(), b"3".to_vec())]);
        let got = all_keys(&store, "p");
        assert_eq!(got.len(), 300);
        for (i, (_, k, v)) in got.iter().enumerate() {
            let n: u32 = std::str::from_utf8(&k[4..]).unwrap().parse().unwrap();
            assert_eq!(v, &state(3, n), "cut at {cut}, key {i}");
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}
