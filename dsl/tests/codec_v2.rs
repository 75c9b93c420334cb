//! Version-2 records: streams of events interned against one block
//! dictionary. What one encoder writes, one decoder reads back exactly;
//! queries give the same answers on the interned view as on the event; and
//! garbage is an error, never a panic or a view of strings that do not exist.

mod common;

use std::sync::Arc;

use bincode::{Decode, Encode};
use proptest::prelude::*;
use vigil_dsl::codec::{
    decode_event, encode_event, encode_event_v1, BlockDecoder, CodecError, Decoded, EventEncoder,
    FORMAT_VERSION,
};
use vigil_dsl::event::{Category, EventType, ExtraValue};
use vigil_dsl::query::fields::{all_paths, lookup};
use vigil_dsl::query::memo::{MemoView, StrMemo};
use vigil_dsl::query::{self, CompiledQuery, EventFields, EventFilter};
use vigil_dsl::Event;

use common::{arb_event, proc_start};

/// Encodes `events` with one encoder, resetting it before the indices in
/// `resets`; returns each record with whether a block starts at it.
fn encode_stream(events: &[Event], resets: &[usize]) -> Vec<(bool, Vec<u8>)> {
    let mut enc = EventEncoder::new();
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let reset = i == 0 || resets.contains(&i);
            if reset {
                enc.reset();
            }
            let mut out = Vec::new();
            enc.encode_into(e, &mut out).unwrap();
            (reset, out)
        })
        .collect()
}

fn decode_stream(records: &[(bool, Vec<u8>)]) -> Vec<Event> {
    let mut dec = BlockDecoder::new();
    records
        .iter()
        .map(|(reset, bytes)| {
            if *reset {
                dec.reset();
            }
            match dec.decode_next(bytes).unwrap() {
                Decoded::View(v) => v.to_event(),
                Decoded::Owned(_) => panic!("the encoder writes version 2"),
            }
        })
        .collect()
}

/// Streams that repeat events and strings, as real traffic does.
fn arb_stream() -> impl Strategy<Value = (Vec<Event>, Vec<usize>)> {
    prop::collection::vec(arb_event(), 1..6).prop_flat_map(|pool| {
        let n = pool.len();
        (
            prop::collection::vec((0..n, any::<bool>()), 1..24),
            prop::collection::vec(0usize..24, 0..4),
        )
            .prop_map(move |(picks, resets)| {
                let events = picks
                    .into_iter()
                    .map(|(i, tweak)| {
                        let mut e = pool[i].clone();
                        if tweak {
                            // Same strings, new combinations.
                            e.process.name = pool[(i + 1) % n].process.name.clone();
                            e.timestamp_ns = e.timestamp_ns.wrapping_add(1);
                        }
                        e
                    })
                    .collect();
                (events, resets)
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn one_encoder_then_one_decoder_is_identity((events, resets) in arb_stream()) {
        let records = encode_stream(&events, &resets);
        prop_assert_eq!(decode_stream(&records), events);
    }

    #[test]
    fn views_answer_every_field_like_the_event((events, resets) in arb_stream()) {
        let records = encode_stream(&events, &resets);
        let mut dec = BlockDecoder::new();
        for ((reset, bytes), e) in records.iter().zip(&events) {
            if *reset {
                dec.reset();
            }
            let v = dec.decode_view(bytes).unwrap();
            prop_assert_eq!(v.category(), e.event.category);
            prop_assert_eq!(EventFields::timestamp_ns(&v), e.timestamp_ns);
            for path in all_paths() {
                let f = lookup(path).unwrap();
                prop_assert_eq!(
                    v.field(f).to_text(),
                    e.field(f).to_text(),
                    "{}", path
                );
            }
            for t in EventType::ALL {
                prop_assert_eq!(v.has_any_type(&[t]), e.has_any_type(&[t]));
            }
        }
    }

    #[test]
    fn skipping_records_keeps_the_dictionary((events, resets) in arb_stream(), skip in prop::collection::vec(any::<bool>(), 24)) {
        let records = encode_stream(&events, &resets);
        let mut dec = BlockDecoder::new();
        for (i, ((reset, bytes), e)) in records.iter().zip(&events).enumerate() {
            if *reset {
                dec.reset();
            }
            if skip[i] {
                dec.skip_next(bytes).unwrap();
            } else {
                prop_assert_eq!(&dec.decode_view(bytes).unwrap().to_event(), e);
            }
        }
    }

    #[test]
    fn queries_agree_on_views_and_events(e in arb_event(), other in arb_event()) {
        // Decode `e` after `other`, so its symbols are not simply 1, 2, 3…
        let records = encode_stream(&[other, e.clone()], &[]);
        let mut dec = BlockDecoder::new();
        dec.decode_view(&records[0].1).unwrap();
        let v = dec.decode_view(&records[1].1).unwrap();
        for q in QUERIES {
            let f = filter(q);
            prop_assert_eq!(f.condition.eval(&v), f.condition.eval(&e), "{}", q);
            prop_assert_eq!(f.matches(&v), f.matches(&e), "{}", q);
        }
        // Against values the event itself holds, so that some match.
        let plain = |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || " ./_-".contains(c));
        if let Some(name) = e.process.name.as_ref().filter(|n| plain(n)) {
            let q = format!("any where process.name == {}", serde_json::to_string(name).unwrap());
            let f = filter(&q);
            prop_assert!(f.matches(&e));
            prop_assert!(f.matches(&v));
        }
        if let Some(arg) = e.process.args.first().filter(|a| plain(a)) {
            let q = format!("any where process.args : \"*{arg}\"");
            let f = filter(&q);
            prop_assert_eq!(f.matches(&v), f.matches(&e), "{}", q);
        }
    }

    #[test]
    fn memoized_string_tests_agree_with_direct_ones((events, resets) in arb_stream()) {
        // Whole events' own strings as patterns, so that some tests pass.
        let mut queries: Vec<String> = QUERIES.iter().map(|q| q.to_string()).collect();
        for e in events.iter().take(3) {
            for s in e.process.args.iter().chain(&e.process.name).chain(&e.host.id) {
                let lit = serde_json::to_string(s).unwrap();
                if lit.contains('\\') {
                    continue;
                }
                queries.push(format!("any where process.args == {lit} or process.name : {lit} or host.id like {lit}"));
            }
        }
        let filters: Vec<EventFilter> = queries.iter().map(|q| filter(q)).collect();
        let mut memo = StrMemo::new(&filters);
        prop_assert!(memo.len() > 20, "{}", memo.len());
        let records = encode_stream(&events, &resets);
        let mut dec = BlockDecoder::new();
        for ((reset, bytes), e) in records.iter().zip(&events) {
            if *reset {
                dec.reset();
                memo.reset();
            }
            let v = dec.decode_view(bytes).unwrap();
            let m = MemoView { view: &v, memo: &memo };
            // Twice: the second answers come from the table.
            for _ in 0..2 {
                for (f, q) in filters.iter().zip(&queries) {
                    prop_assert_eq!(f.condition.eval(&m), f.condition.eval(e), "{}", q);
                }
            }
        }
    }

    #[test]
    fn arbitrary_records_never_panic_and_never_leave_a_bad_dictionary(
        good in prop::collection::vec(arb_event(), 1..4),
        junk in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..96), 1..6),
    ) {
        let records = encode_stream(&good, &[]);
        let mut junk = junk;
        for (i, bytes) in junk.iter_mut().enumerate() {
            if i % 2 == 0 && !bytes.is_empty() {
                bytes[0] = FORMAT_VERSION;
            }
        }
        let mut dec = BlockDecoder::new();
        for bytes in &junk {
            let before = dec.dict_len();
            match dec.decode_next(bytes) {
                Ok(Decoded::View(v)) => {
                    // Whatever decoded refers only to strings that exist.
                    let e = v.to_event();
                    let _ = e.process.args.len();
                }
                Ok(Decoded::Owned(_)) => {}
                Err(_) => prop_assert_eq!(dec.dict_len(), before),
            }
            let _ = dec.skip_next(bytes);
        }
        // A fresh block still decodes after all that.
        dec.reset();
        for ((_, bytes), e) in records.iter().zip(&good) {
            prop_assert_eq!(&dec.decode_view(bytes).unwrap().to_event(), e);
        }
    }

    #[test]
    fn corrupted_stream_records_are_errors_or_events(
        (events, resets) in arb_stream(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut records = encode_stream(&events, &resets);
        for (rec, at, value) in flips {
            let n = records.len();
            let r = &mut records[rec.index(n)].1;
            let i = 1 + at.index(r.len() - 1);
            r[i] = value;
        }
        let mut dec = BlockDecoder::new();
        for (reset, bytes) in &records {
            if *reset {
                dec.reset();
            }
            if let Ok(d) = dec.decode_next(bytes) {
                let e = d.to_event();
                // Whatever decodes re-encodes and decodes to itself.
                prop_assert_eq!(decode_event(&encode_event(&e).unwrap()).unwrap(), e);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_truncation_mid_stream_is_an_error_that_changes_nothing((events, _r) in arb_stream()) {
        let records = encode_stream(&events, &[]);
        let last = records.len() - 1;
        let mut dec = BlockDecoder::new();
        for (_, bytes) in &records[..last] {
            dec.decode_view(bytes).unwrap();
        }
        let full = &records[last].1;
        let before = dec.dict_len();
        for len in 0..full.len() {
            prop_assert!(dec.decode_next(&full[..len]).is_err());
            prop_assert_eq!(dec.dict_len(), before);
        }
        prop_assert_eq!(&dec.decode_view(full).unwrap().to_event(), &events[last]);
    }
}

const QUERIES: &[&str] = &[
    r#"process where process.name : "curl""#,
    r#"any where process.name == "bash""#,
    r#"any where process.name == null"#,
    r#"any where process.parent.name != null"#,
    r#"any where process.args : ("*a*", "-c")"#,
    r#"any where process.args == "x""#,
    r#"any where process.parent.args : "*e*""#,
    r#"any where length(process.args) > 1"#,
    r#"any where process.args_count >= 2"#,
    r#"any where process.parent.args_count == 1"#,
    r#"any where length(process.name) < 5"#,
    r#"any where process.executable like~ "*/b*""#,
    r#"any where process.command_line regex~ ".*[0-9].*""#,
    r#"any where startswith~(process.working_directory, "/", "c")"#,
    r#"any where endswith(file.path, ".sh") or stringcontains(file.name, "a")"#,
    r#"any where file.extension in~ ("SH", "py", "")"#,
    r#"any where file.target_path != null"#,
    r#"any where event.type == "start" and event.type != "end""#,
    r#"any where event.type in ("creation", "deletion", "change")"#,
    r#"any where length(event.type) == 2"#,
    r#"any where event.category == "network" or event.category in ("file", "process")"#,
    r#"any where event.type : "st*""#,
    r#"any where event.category : "proc*""#,
    r#"any where event.action == "exec" and event.outcome == null"#,
    r#"any where event.id : "1*""#,
    r#"any where host.id == process.entity_id"#,
    r#"any where process.name == process.parent.name"#,
    r#"any where process.args == process.parent.args"#,
    r#"any where process.pid == process.parent.pid"#,
    r#"any where destination.ip == source.ip"#,
    r#"any where host.os.type in ("macos", "linux") and host.os.family != "windows""#,
    r#"any where host.os.version > "1""#,
    r#"any where user.id == "501" or user.name like "a*""#,
    r#"any where cidrmatch(destination.ip, "10.0.0.0/8", "::/1") or source.ip in ("1.2.3.4", "::1")"#,
    r#"any where destination.ip : "1*""#,
    r#"any where destination.port < 1024 and source.port > 0"#,
    r#"any where network.transport : "tcp" and network.direction != "ingress""#,
    r#"any where process.code_signature.trusted == true or process.parent.code_signature.platform_binary"#,
    r#"any where not process.code_signature.exists"#,
    r#"any where process.code_signature.signing_id : "com.apple.*" and process.code_signature.team_id == null"#,
    r#"any where process.hash.cdhash != null or process.hash.sha256 == "ab""#,
    r#"any where process.exit_code != 0 and process.parent.exit_code == null"#,
    r#"any where @timestamp > 0"#,
    r#"any where ?process.nope == null and ?nope.field != "x""#,
    // Fields outside the schema, which replayed documents carry as extras.
    r#"any where process.code_signature.exists == true"#,
    r#"any where process.Ext.effective_parent.executable : "*a*""#,
    r#"any where event.dataset != null and event.dataset in~ ("A", "b")"#,
    r#"any where dll.name : ("*a*", "?") or dll.name == null"#,
    r#"any where x > 0 or x == true or x == 5 or x in (1, "2")"#,
    r#"any where startswith~(dll.name, process.name) or event.dataset == process.name"#,
    r#"any where length(dll.name) > 1"#,
];

fn filter(q: &str) -> EventFilter {
    match query::compile(q).unwrap_or_else(|e| panic!("{q}: {e}")) {
        CompiledQuery::Event(f) => f,
        CompiledQuery::Sequence(_) => panic!("{q} is a sequence"),
    }
}

#[test]
fn every_query_in_the_table_compiles() {
    for q in QUERIES {
        filter(q);
    }
}

fn block_of(events: &[Event]) -> Vec<Vec<u8>> {
    let mut enc = EventEncoder::new();
    events
        .iter()
        .map(|e| {
            let mut out = Vec::new();
            enc.encode_into(e, &mut out).unwrap();
            out
        })
        .collect()
}

#[test]
fn repeated_strings_are_stored_once_per_block() {
    let mut e = proc_start(1, "Google Chrome Helper");
    e.process.executable = Some("/Applications/Google Chrome.app/Contents/MacOS/Helper".into());
    e.process.args = vec![
        e.process.executable.clone().unwrap(),
        "--type=renderer".into(),
    ];
    let recs = block_of(&[e.clone(), e.clone(), e.clone()]);
    assert!(recs[1].len() < recs[0].len() / 2, "{recs:?}");
    assert_eq!(recs[1], recs[2]);
    // The executable appears once even though args repeat it.
    let exe = e.process.executable.as_deref().unwrap().as_bytes();
    let count = recs[0].windows(exe.len()).filter(|w| *w == exe).count();
    assert_eq!(count, 1);
    // A standalone record is decodable on its own; later ones are not.
    assert_eq!(decode_event(&recs[0]).unwrap(), e);
    assert!(matches!(
        decode_event(&recs[1]),
        Err(CodecError::Corrupt(_))
    ));
}

#[test]
fn a_symbol_not_yet_defined_is_an_error() {
    let e = proc_start(1, "zsh");
    let recs = block_of(&[e.clone(), e.clone()]);
    let mut dec = BlockDecoder::new();
    // The second record alone refers to strings only the first defines.
    match dec.decode_view(&recs[1]) {
        Err(CodecError::Corrupt(m)) => assert!(m.contains("symbol"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(dec.dict_len(), 0);
    assert_eq!(dec.decode_view(&recs[0]).unwrap().to_event(), e);
    assert_eq!(dec.decode_view(&recs[1]).unwrap().to_event(), e);
    // After a reset the dictionary is gone again.
    dec.reset();
    assert!(dec.decode_view(&recs[1]).is_err());
}

#[test]
fn bad_utf8_and_unknown_enum_values_are_errors() {
    let e = proc_start(1, "zsh");
    let rec = encode_event(&e).unwrap();
    let at = rec.windows(3).position(|w| w == b"zsh").unwrap();
    let mut bad = rec.clone();
    bad[at] = 0xff;
    assert!(matches!(decode_event(&bad), Err(CodecError::Corrupt(m)) if m.contains("UTF-8")));
    assert!(matches!(
        BlockDecoder::new().decode_next(&bad),
        Err(CodecError::Corrupt(_))
    ));
}

#[test]
fn version_one_and_two_records_mix_in_one_block() {
    let a = proc_start(1, "a");
    let b = proc_start(2, "b");
    let v1 = encode_event_v1(&a).unwrap();
    let mut enc = EventEncoder::new();
    let mut v2 = Vec::new();
    enc.encode_into(&b, &mut v2).unwrap();
    let mut dec = BlockDecoder::new();
    match dec.decode_next(&v1).unwrap() {
        Decoded::Owned(e) => assert_eq!(*e, a),
        Decoded::View(_) => panic!("version 1 is decoded whole"),
    }
    dec.skip_next(&v1).unwrap();
    let d = dec.decode_next(&v2).unwrap();
    assert!(filter(r#"process where process.name == "b""#).matches(&d));
    assert_eq!(d.into_event(), b);
}

#[test]
fn rollback_forgets_the_strings_of_an_unstored_record() {
    let a = proc_start(1, "a");
    let b = proc_start(2, "b");
    let mut enc = EventEncoder::new();
    let mut ra = Vec::new();
    enc.encode_into(&a, &mut ra).unwrap();
    let n = enc.dict_len();
    let mut rb = Vec::new();
    enc.encode_into(&b, &mut rb).unwrap();
    assert_eq!(enc.dict_len(), n + 1);
    enc.rollback_last();
    assert_eq!(enc.dict_len(), n);
    // Re-encoded, "b" is defined again, so the stream decodes.
    let mut rb2 = Vec::new();
    enc.encode_into(&b, &mut rb2).unwrap();
    assert_eq!(rb, rb2);
    let mut dec = BlockDecoder::new();
    dec.decode_view(&ra).unwrap();
    assert_eq!(dec.decode_view(&rb2).unwrap().to_event(), b);
}

#[test]
fn a_shared_parent_is_written_again_after_a_rollback_or_a_reset() {
    // Two children of one parent `Arc`: the encoder copies the parent's
    // bytes from its memo only while the symbols they name are defined.
    let mut child = proc_start(1, "child");
    child.process.parent = Some(Arc::new(proc_start(0, "parent").process));
    let mut sibling = child.clone();
    sibling.process.name = Some("sibling".into());
    let alone = |record: &[u8]| {
        let mut dec = BlockDecoder::new();
        dec.decode_view(record).map(|v| v.to_event())
    };
    for forget in [EventEncoder::rollback_last, EventEncoder::reset] {
        let mut enc = EventEncoder::new();
        let mut first = Vec::new();
        enc.encode_into(&child, &mut first).unwrap();
        forget(&mut enc);
        // The first record is gone: the next one defines "parent" again.
        let mut next = Vec::new();
        enc.encode_into(&sibling, &mut next).unwrap();
        assert_eq!(alone(&next).unwrap(), sibling);
        // Kept, the first record defines it and the second names it.
        let mut dec = BlockDecoder::new();
        let mut again = Vec::new();
        enc.encode_into(&child, &mut again).unwrap();
        dec.decode_view(&next).unwrap();
        assert_eq!(dec.decode_view(&again).unwrap().to_event(), child);
        assert!(
            alone(&again).is_err(),
            "the memo's copy names earlier symbols"
        );
    }
}

#[test]
fn event_types_keep_their_order_and_repeats() {
    let mut e = proc_start(1, "x");
    for types in [
        vec![],
        vec![EventType::Start],
        vec![EventType::Start, EventType::Connection],
        vec![EventType::Connection, EventType::Start],
        vec![EventType::User, EventType::User],
        EventType::ALL.to_vec(),
    ] {
        e.event.types = types;
        assert_eq!(decode_event(&encode_event(&e).unwrap()).unwrap(), e);
    }
    e.event.category = Category::Other;
    assert_eq!(decode_event(&encode_event(&e).unwrap()).unwrap(), e);
}

// The documented layout is bincode 2 of these types: decoding a record with
// bincode itself checks that the hand-written coder writes what it says.

#[derive(Debug, Encode, Decode)]
struct BcRecord {
    new_strings: Vec<String>,
    timestamp_ns: i64,
    category: Category,
    types: u32,
    type_order: Vec<EventType>,
    event: [u32; 3],
    host: [u32; 5],
    process: BcProc,
    parents: Vec<BcProc>,
    user: [u32; 2],
    file: Option<[u32; 4]>,
    source: Option<vigil_dsl::event::Endpoint>,
    destination: Option<vigil_dsl::event::Endpoint>,
    network: Option<[u32; 2]>,
}

/// Version 3 appends these after the version-2 body.
#[derive(Debug, Encode, Decode)]
struct BcExtra {
    key: u32,
    value: BcExtraValue,
}

#[derive(Debug, Encode, Decode, PartialEq)]
enum BcExtraValue {
    Str(u32),
    Int(i64),
    Float(u32),
    Bool(bool),
    List(Vec<u32>),
}

#[derive(Debug, Encode, Decode)]
struct BcProc {
    pid: Option<u32>,
    ids: [u32; 3],
    args: Vec<u32>,
    strs: [u32; 4],
    trusted: Option<bool>,
    platform_binary: Option<bool>,
    hashes: [u32; 2],
    exit_code: Option<i32>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn records_are_bincode_of_the_documented_layout(e in arb_event()) {
        let rec = encode_event(&e).unwrap();
        let (bc, mut used): (BcRecord, usize) =
            bincode::decode_from_slice(&rec[1..], bincode::config::standard()).unwrap();
        let extras: Vec<BcExtra> = if rec[0] == 3 {
            let (x, n) = bincode::decode_from_slice(&rec[1 + used..], bincode::config::standard()).unwrap();
            used += n;
            x
        } else {
            Vec::new()
        };
        prop_assert_eq!(used, rec.len() - 1);
        prop_assert_eq!(extras.len(), e.extra.len());
        let mut dec = BlockDecoder::new();
        let v = dec.decode_view(&rec).unwrap();
        let s = v.syms();
        prop_assert_eq!(bc.new_strings.len(), v.dict().len());
        for (a, b) in bc.new_strings.iter().zip(v.dict()) {
            prop_assert_eq!(a, b);
        }
        prop_assert_eq!(bc.timestamp_ns, s.timestamp_ns);
        prop_assert_eq!(bc.category, s.category);
        prop_assert_eq!(bc.types, s.types);
        prop_assert_eq!(bc.event, [s.action, s.event_id, s.outcome]);
        prop_assert_eq!(bc.process.pid, s.process.pid);
        prop_assert_eq!(&bc.process.args[..], s.args_of(&s.process));
        prop_assert_eq!(bc.parents.len(), s.parents.len());
        prop_assert_eq!(bc.process.exit_code, s.process.exit_code);
        prop_assert_eq!(bc.user, [s.user_id, s.user_name]);
        prop_assert_eq!(bc.file.is_some(), s.file.is_some());
        prop_assert_eq!(bc.source, s.source.clone());
        prop_assert_eq!(bc.destination, s.destination.clone());
        prop_assert_eq!(bc.network.map(|n| n[0]), s.network.map(|n| n.transport));
        for (x, (path, value)) in extras.iter().zip(e.extra.iter()) {
            prop_assert_eq!(v.str(x.key), Some(path));
            let same_kind = matches!(
                (&x.value, value),
                (BcExtraValue::Str(_), ExtraValue::Str(_))
                    | (BcExtraValue::Int(_), ExtraValue::Int(_))
                    | (BcExtraValue::Float(_), ExtraValue::Float(_))
                    | (BcExtraValue::Bool(_), ExtraValue::Bool(_))
                    | (BcExtraValue::List(_), ExtraValue::List(_))
            );
            prop_assert!(same_kind, "{:?} vs {:?}", x.value, value);
        }
    }
}
