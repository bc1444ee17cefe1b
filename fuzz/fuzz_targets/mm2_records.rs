//! Decoders of the records in MM2's and Strait's internal topics (`replicator::formats`), and
//! the state that is rebuilt from them when read back (`replicator::offsets`).
//!
//! Input layout: byte 0 chooses what is fuzzed (`b & 0x0f`, modulo 9; bit 7 makes the value
//! of a single record absent, a tombstone):
//! - single records, byte 1 = key length `n` (cut to what remains), then `n` key bytes, the
//!   rest is the value:
//!   0. `OffsetSync::decode` (`mm2-offset-syncs.<alias>.internal`);
//!   1. `Checkpoint::decode` (`<source>.checkpoints.internal`);
//!   2. `Checkpoint::decode_key`;
//!   3. `Heartbeat::decode` (`heartbeats`);
//!   4. `SourceProgressKey::decode` / `SourceProgress::decode`, Kafka Connect's JSON source
//!      offsets in `mm2-offsets.<source>.internal`;
//!   5. `OffsetMapRecord::decode`, Strait's own offset-map records;
//! - logs: byte 1 is a parameter, then records `klen u8, vlen u8 (0xff = tombstone), key,
//!   value` to the end (an incomplete last record is dropped); records that do not decode are
//!   skipped:
//!   6. offset-map records, grouped per source partition and given to `OffsetMap::restore` (as
//!      `internal::read_offset_maps` does), `max_runs = 1 + (param & 0x0f)`;
//!   7. offset syncs, 16 bytes first (an `OffsetMap` start and downstream end, `i64` BE), fed
//!      to `Mm2OffsetSyncStore` (`param & 1`: full history, else pessimistic loading; read to
//!      the end after record `param >> 1`), then `translate`, `syncs`, `translate_over` and
//!      `conservative_below` at offsets around every sync;
//!   8. checkpoints, offered to and loaded into `CheckpointState`.
//!
//! Asserts: no panic. Round trips, which hold because the decoders reject nothing the encoders
//! could not write back: a decoded record encodes without error and decodes to itself; the
//! encoded key is the prefix of the input key that was read (the binary decoders ignore
//! trailing bytes, as Java's `Schema.read` does); the encoded value equals the bytes read, apart
//! from the version header (written as 0; newer versions are read with the v0 layout) and an
//! offset-map head's negative `downstream_end` (any negative means unknown, written as -1);
//! Connect JSON keys re-encode canonically (encoding twice gives the same bytes). A restored
//! offset map is consistent (runs sorted, disjoint, at most `max_runs`, inside
//! `[start, frontier]`), translates monotonically and only inside `[start, frontier]`,
//! `upstream_for` inverts `translate` on forwarded records, and it survives its own snapshot
//! written and read back. The MM2 sync store answers like `translate_over` over its compacted
//! syncs (as documented), its newest sync is the last one handled, and `conservative_below`
//! answers only below the map's start and never beyond the map's answer at its start.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use replicator::formats::{
    Checkpoint, FormatError, Heartbeat, OffsetMapRecord, OffsetSync, SourceProgress,
    SourceProgressKey,
};
use replicator::offsets::{
    conservative_below, translate_over, CheckpointState, Mm2OffsetSyncStore, Mm2Translation,
    OffsetMap, TopicPartition,
};

fn split_record(rest: &[u8]) -> (&[u8], &[u8]) {
    match rest {
        [n, rest @ ..] => rest.split_at(usize::from(*n).min(rest.len())),
        [] => (&[], &[]),
    }
}

/// `klen u8, vlen u8 (0xff = tombstone), key, value` records.
fn split_log(mut rest: &[u8]) -> Vec<(&[u8], Option<&[u8]>)> {
    let mut out = Vec::new();
    while let [klen, vlen, tail @ ..] = rest {
        let klen = usize::from(*klen);
        let vn = if *vlen == 0xff { 0 } else { usize::from(*vlen) };
        if tail.len() < klen + vn {
            break;
        }
        let (key, tail) = tail.split_at(klen);
        let (value, tail) = tail.split_at(vn);
        out.push((key, (*vlen != 0xff).then_some(value)));
        rest = tail;
    }
    out
}

fn assert_prefix(encoded: &[u8], input: &[u8], what: &str) {
    assert!(
        input.len() >= encoded.len() && input[..encoded.len()] == *encoded,
        "{what}: re-encoded {encoded:02x?} is not a prefix of the input {input:02x?}"
    );
}

fn offset_sync(key: &[u8], value: Option<&[u8]>) {
    let Ok(sync) = OffsetSync::decode(key, value) else {
        return;
    };
    let k = sync.encode_key().expect("a decoded topic fits a STRING");
    let v = sync.encode_value();
    assert_prefix(&k, key, "OffsetSync key");
    assert_prefix(&v, value.unwrap(), "OffsetSync value");
    assert_eq!(OffsetSync::decode(&k, Some(&v)).unwrap(), sync);
    let _ = sync.to_string();
}

fn checkpoint(key: &[u8], value: Option<&[u8]>) {
    let decoded_key = Checkpoint::decode_key(key);
    let Ok(cp) = Checkpoint::decode(key, value) else {
        return;
    };
    assert_eq!(
        decoded_key,
        Ok((cp.consumer_group_id.clone(), cp.topic.clone(), cp.partition))
    );
    let k = cp.encode_key().expect("decoded strings fit a STRING");
    let v = cp.encode_value().expect("decoded metadata fits a STRING");
    assert_prefix(&k, key, "Checkpoint key");
    assert_eq!(&v[..2], &[0, 0], "written as version 0");
    assert_prefix(&v[2..], &value.unwrap()[2..], "Checkpoint value");
    assert_eq!(Checkpoint::decode(&k, Some(&v)).unwrap(), cp);
}

fn checkpoint_key(key: &[u8]) {
    let Ok((group, topic, partition)) = Checkpoint::decode_key(key) else {
        return;
    };
    let cp = Checkpoint {
        consumer_group_id: group,
        topic,
        partition,
        upstream_offset: 0,
        downstream_offset: 0,
        metadata: String::new(),
    };
    let k = cp.encode_key().expect("decoded strings fit a STRING");
    assert_prefix(&k, key, "Checkpoint key");
}

fn heartbeat(key: &[u8], value: Option<&[u8]>) {
    let Ok(hb) = Heartbeat::decode(key, value) else {
        return;
    };
    let k = hb.encode_key().expect("decoded aliases fit a STRING");
    let v = hb.encode_value();
    assert_prefix(&k, key, "Heartbeat key");
    assert_eq!(&v[..2], &[0, 0], "written as version 0");
    assert_prefix(&v[2..], &value.unwrap()[2..], "Heartbeat value");
    assert_eq!(Heartbeat::decode(&k, Some(&v)).unwrap(), hb);
}

fn source_progress(key: &[u8], value: Option<&[u8]>) {
    if let Ok(k) = SourceProgressKey::decode(key) {
        assert!(k.partition >= 0);
        let encoded = k.encode();
        let again = SourceProgressKey::decode(&encoded).expect("an encoded key decodes");
        assert_eq!(again, k);
        assert_eq!(again.encode(), encoded, "encoding is canonical");
    }
    match SourceProgress::decode(value) {
        Ok(Some(p)) => {
            let encoded = p.encode();
            assert_eq!(SourceProgress::decode(Some(&encoded)), Ok(Some(p)));
            assert!(p.resume_offset() >= p.last_replicated_offset);
        }
        Ok(None) => {}
        Err(FormatError::Json { .. }) => assert!(value.is_some()),
        Err(e) => panic!("unexpected error kind {e:?}"),
    }
}

fn offset_map_record(key: &[u8], value: Option<&[u8]>) {
    // The partition a key names (what an undecodable record is charged to) is the decoded
    // record's whenever the whole record decodes.
    let named = OffsetMapRecord::key_partition(key);
    let Ok(r) = OffsetMapRecord::decode(key, value) else {
        return;
    };
    let (t, p) = r.topic_partition();
    assert_eq!(named, Some((t.to_string(), p)));
    let k = r.encode_key().expect("a decoded topic fits a STRING");
    let v = r.encode_value();
    assert_prefix(&k, key, "OffsetMap key");
    match (&r, &v, value) {
        (OffsetMapRecord::RunTombstone { .. }, None, None) => {}
        (OffsetMapRecord::Run { .. }, Some(v), Some(value)) => {
            assert_prefix(v, value, "OffsetMap run value")
        }
        (OffsetMapRecord::Head { downstream_end, .. }, Some(v), Some(value)) => {
            let n = if downstream_end.is_some() { 26 } else { 18 };
            assert_prefix(&v[..n], value, "OffsetMap head value");
            if downstream_end.is_none() {
                assert_eq!(&v[18..], &(-1i64).to_be_bytes());
                assert!(value[18] & 0x80 != 0, "unknown end was negative");
            }
        }
        other => panic!("value presence changed: {other:?}"),
    }
    assert_eq!(OffsetMapRecord::decode(&k, v.as_deref()).unwrap(), r);
}

/// Offsets worth asking about around `o`.
fn around(o: i64, out: &mut Vec<i64>) {
    out.extend([o.saturating_sub(1), o, o.saturating_add(1)]);
}

fn edges() -> Vec<i64> {
    vec![i64::MIN, -1, 0, 1, i64::MAX - 1, i64::MAX]
}

fn check_map(map: &OffsetMap, max_runs: usize) {
    let runs: Vec<_> = map.runs().copied().collect();
    assert!(runs.len() <= max_runs);
    for r in &runs {
        assert!(r.count >= 1 && r.upstream_start >= 0 && r.downstream_start >= 0);
    }
    for w in runs.windows(2) {
        assert!(w[0].upstream_end() <= w[1].upstream_start, "{runs:?}");
        assert!(w[0].downstream_end() <= w[1].downstream_start, "{runs:?}");
    }
    assert_eq!(map.start().is_some(), map.frontier().is_some());
    let mut probes = edges();
    if let (Some(start), Some(frontier)) = (map.start(), map.frontier()) {
        assert!(0 <= start && start <= frontier);
        if let (Some(first), Some(last)) = (runs.first(), runs.last()) {
            assert!(start <= first.upstream_start);
            assert!(last.upstream_end() <= frontier);
            assert!(map
                .downstream_end()
                .is_some_and(|d| d >= last.downstream_end()));
        }
        around(start, &mut probes);
        around(frontier, &mut probes);
    } else {
        assert!(runs.is_empty());
    }
    for r in &runs {
        around(r.upstream_start, &mut probes);
        around(r.upstream_end(), &mut probes);
        for u in [r.upstream_start, r.upstream_end() - 1] {
            let d = map.translate(u).expect("a forwarded record translates");
            assert_eq!(d, r.downstream_start + (u - r.upstream_start));
            assert_eq!(
                map.upstream_for(d),
                Some(u),
                "upstream_for inverts translate"
            );
        }
    }
    probes.sort_unstable();
    let mut last = None;
    for u in probes {
        let d = map.translate(u);
        let inside = map
            .start()
            .zip(map.frontier())
            .is_some_and(|(s, f)| s <= u && u <= f);
        assert!(d.is_none() || inside, "translate({u}) outside the map");
        if let Some(d) = d {
            assert!(
                last.is_none_or(|l| l <= d),
                "translate is not monotonic at {u}"
            );
            last = Some(d);
        }
        if let Some(d) = d {
            let _ = map.upstream_for(d);
        }
        let _ = map.upstream_for(u);
    }
}

fn offset_map_log(param: u8, records: &[(&[u8], Option<&[u8]>)]) {
    let max_runs = 1 + usize::from(param & 0x0f);
    let mut by_partition: BTreeMap<(String, i32), Vec<OffsetMapRecord>> = BTreeMap::new();
    for (k, v) in records {
        if let Ok(r) = OffsetMapRecord::decode(k, *v) {
            let (t, p) = r.topic_partition();
            by_partition.entry((t.to_owned(), p)).or_default().push(r);
        }
    }
    for ((topic, partition), records) in by_partition {
        let Ok(mut map) = OffsetMap::restore(records, max_runs) else {
            continue;
        };
        check_map(&map, max_runs);
        // Its own snapshot, through the wire format, restores the same map.
        let snapshot: Vec<OffsetMapRecord> = map
            .snapshot_records(&topic, partition)
            .into_iter()
            .map(|r| {
                let k = r.encode_key().expect("encodable");
                let v = r.encode_value();
                OffsetMapRecord::decode(&k, v.as_deref()).expect("decodable")
            })
            .collect();
        let back = OffsetMap::restore(snapshot, max_runs).expect("a snapshot restores");
        assert_eq!(
            back.runs().collect::<Vec<_>>(),
            map.runs().collect::<Vec<_>>()
        );
        assert_eq!(
            (back.start(), back.frontier(), back.downstream_end()),
            (map.start(), map.frontier(), map.downstream_end())
        );
    }
}

fn offset_sync_log(param: u8, rest: &[u8]) {
    let Some((bounds, rest)) = rest.split_first_chunk::<16>() else {
        return;
    };
    let map_start = i64::from_be_bytes(bounds[..8].try_into().unwrap());
    let map_end = i64::from_be_bytes(bounds[8..].try_into().unwrap());
    let syncs: Vec<OffsetSync> = split_log(rest)
        .into_iter()
        .filter_map(|(k, v)| OffsetSync::decode(k, v).ok())
        .collect();
    let mut store = if param & 1 == 1 {
        Mm2OffsetSyncStore::with_full_history()
    } else {
        Mm2OffsetSyncStore::new()
    };
    let read_to_end_after = usize::from(param >> 1);
    let mut probes = edges();
    let mut newest: BTreeMap<TopicPartition, (i64, i64)> = BTreeMap::new();
    for (i, sync) in syncs.iter().enumerate() {
        if i == read_to_end_after {
            store.mark_read_to_end();
        }
        store.handle(sync);
        around(sync.upstream_offset, &mut probes);
        newest.insert(
            TopicPartition::new(sync.topic.clone(), sync.partition),
            (sync.upstream_offset, sync.downstream_offset),
        );
    }
    let tp0 = TopicPartition::new("t", 0);
    if !store.is_read_to_end() {
        assert_eq!(store.translate(&tp0, 0), Mm2Translation::NotReady);
    }
    store.mark_read_to_end();
    let map = OffsetMap::starting_at(map_start, Some(map_end), 16).ok();
    around(map_start, &mut probes);
    for tp in store.partitions().cloned().collect::<Vec<_>>() {
        let compact = store.syncs(&tp);
        let (u, d) = newest[&tp];
        assert_eq!(
            (compact[0].upstream, compact[0].downstream),
            (u, d),
            "the newest sync comes first"
        );
        for &u in &probes {
            let t = store.translate(&tp, u);
            assert_eq!(t, translate_over(&compact, u), "{tp} at {u}");
            if let Mm2Translation::Offset(_) = t {
                assert!(compact.iter().any(|s| s.upstream <= u));
            }
            if let Some(map) = &map {
                let at_start = map
                    .translate(map_start)
                    .expect("the map answers at its start");
                match conservative_below(map, &compact, u) {
                    Some(d) => {
                        assert!(u < map_start);
                        assert!(d <= at_start, "{d} beyond the map's {at_start}");
                    }
                    None => {}
                }
            }
        }
    }
}

fn checkpoint_log(records: &[(&[u8], Option<&[u8]>)]) {
    let mut state = CheckpointState::new();
    let mut loaded = CheckpointState::new();
    for (k, v) in records {
        let Ok(cp) = Checkpoint::decode(k, *v) else {
            continue;
        };
        let tp = TopicPartition::new(cp.topic.clone(), cp.partition);
        loaded.load(cp.clone());
        assert_eq!(loaded.get(&cp.consumer_group_id, &tp), Some(&cp));
        let decision = state.decide(&cp);
        assert_eq!(state.offer(cp.clone()), decision);
        if decision.emits() {
            assert_eq!(state.get(&cp.consumer_group_id, &tp), Some(&cp));
        } else {
            assert!(cp.downstream_offset < 0 || state.get(&cp.consumer_group_id, &tp).is_some());
        }
    }
    for group in loaded.groups().map(str::to_owned).collect::<Vec<_>>() {
        for (tp, offset) in loaded.converted_offsets(&group) {
            assert_eq!(
                loaded.get(&group, &tp).map(|c| c.downstream_offset),
                Some(offset.offset)
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [selector, rest @ ..] = data else {
        return;
    };
    let tombstone = selector & 0x80 != 0;
    let kind = (selector & 0x0f) % 9;
    match kind {
        0..=5 => {
            let (key, value) = split_record(rest);
            let value = (!tombstone).then_some(value);
            match kind {
                0 => offset_sync(key, value),
                1 => checkpoint(key, value),
                2 => checkpoint_key(key),
                3 => heartbeat(key, value),
                4 => source_progress(key, value),
                _ => offset_map_record(key, value),
            }
        }
        _ => {
            let [param, rest @ ..] = rest else {
                return;
            };
            match kind {
                6 => offset_map_log(*param, &split_log(rest)),
                7 => offset_sync_log(*param, rest),
                _ => checkpoint_log(&split_log(rest)),
            }
        }
    }
});
