//! The spool's binary event form: lossless for every event, and garbage in
//! gives an error, never a panic. Version-2 (interned) block streams are
//! tested in `codec_v2.rs`; the splicing tests below build version-1
//! records, which old spools hold and which must stay readable.

mod common;

use proptest::prelude::*;
use std::sync::Arc;
use vigil_dsl::codec::{
    decode_event, encode_event, encode_event_into, encode_event_v1, CodecError, FORMAT_VERSION,
    FORMAT_VERSION_V1, FORMAT_VERSION_V3,
};
use vigil_dsl::event::Process;
use vigil_dsl::Event;

use common::{arb_event, proc_start};

fn sample_event() -> Event {
    let mut e = proc_start(1_725_435_151, "zsh");
    e.process.args = vec!["/bin/zsh".into(), "-c".into(), "échо 名前".into()];
    e.process.pid = Some(91306);
    e.process.parent = Some(Arc::new(Process {
        pid: Some(64632),
        name: Some("JamfCheck".into()),
        ..Process::default()
    }));
    e.destination = Some(vigil_dsl::event::Endpoint {
        ip: Some("2001:db8::1".parse().unwrap()),
        port: Some(443),
    });
    e
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn decode_of_encode_is_identity(e in arb_event()) {
        let bytes = encode_event(&e).unwrap();
        // Version 3 only when the event carries fields outside the schema.
        let expected = if e.extra.is_empty() { FORMAT_VERSION } else { FORMAT_VERSION_V3 };
        prop_assert_eq!(bytes[0], expected);
        let back = decode_event(&bytes).unwrap();
        prop_assert_eq!(back, e);
    }

    #[test]
    fn version_one_records_still_decode(mut e in arb_event()) {
        // Version 1 predates extras: it never carries them.
        e.extra = Default::default();
        let bytes = encode_event_v1(&e).unwrap();
        prop_assert_eq!(bytes[0], FORMAT_VERSION_V1);
        prop_assert_eq!(decode_event(&bytes).unwrap(), e);
    }

    #[test]
    fn encode_into_appends_records_that_decode_separately(a in arb_event(), b in arb_event()) {
        let mut buf = Vec::new();
        encode_event_into(&a, &mut buf).unwrap();
        let split = buf.len();
        encode_event_into(&b, &mut buf).unwrap();
        prop_assert_eq!(&buf[..split], &encode_event(&a).unwrap()[..]);
        prop_assert_eq!(decode_event(&buf[..split]).unwrap(), a);
        prop_assert_eq!(decode_event(&buf[split..]).unwrap(), b);
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512), version in 0u8..3) {
        let mut bytes = body;
        if version > 0 && !bytes.is_empty() {
            bytes[0] = version;
        }
        let _ = decode_event(&bytes);
    }

    #[test]
    fn corrupted_valid_records_never_panic(
        e in arb_event(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = encode_event(&e).unwrap();
        for (at, value) in flips {
            let i = 1 + at.index(bytes.len() - 1);
            bytes[i] = value;
        }
        // Either an error or some event; what matters is no panic, and that
        // whatever decodes is a well-formed event that round-trips (bincode
        // accepts non-canonical varints, so the bytes themselves may differ).
        if let Ok(decoded) = decode_event(&bytes) {
            let again = encode_event(&decoded).unwrap();
            prop_assert!(again.len() <= bytes.len());
            prop_assert_eq!(decode_event(&again).unwrap(), decoded);
        }
    }

}

proptest! {
    // Each case decodes every prefix of a record: fewer cases suffice.
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn every_truncation_of_a_valid_record_is_an_error(e in arb_event(), v1 in any::<bool>()) {
        let bytes = if v1 { encode_event_v1(&e).unwrap() } else { encode_event(&e).unwrap() };
        for len in 0..bytes.len() {
            let r = decode_event(&bytes[..len]);
            prop_assert!(r.is_err(), "prefix of {} / {} bytes decoded: {:?}", len, bytes.len(), r);
            if len == 0 {
                prop_assert!(matches!(r, Err(CodecError::Empty)));
            } else {
                prop_assert!(matches!(r, Err(CodecError::Corrupt(_))), "{:?}", r);
            }
        }
    }
}

#[test]
fn unknown_version_byte_is_unsupported_version() {
    let mut bytes = encode_event(&sample_event()).unwrap();
    for v in [0u8, 4, 7, 255] {
        bytes[0] = v;
        match decode_event(&bytes) {
            Err(CodecError::UnsupportedVersion(got)) => assert_eq!(got, v),
            other => panic!("version {v}: expected UnsupportedVersion, got {other:?}"),
        }
    }
    // The version is checked before the body: even a lone byte says so.
    assert!(matches!(
        decode_event(&[9]),
        Err(CodecError::UnsupportedVersion(9))
    ));
    assert!(matches!(decode_event(&[]), Err(CodecError::Empty)));
}

#[test]
fn trailing_bytes_are_reported_with_their_count() {
    for mut bytes in [
        encode_event(&sample_event()).unwrap(),
        encode_event_v1(&sample_event()).unwrap(),
    ] {
        bytes.extend_from_slice(&[0, 0, 0]);
        assert!(
            matches!(decode_event(&bytes), Err(CodecError::TrailingBytes(3))),
            "{:?}",
            decode_event(&bytes)
        );
    }
}

#[test]
fn a_specific_event_survives_with_unicode_args_parent_and_ipv6() {
    let e = sample_event();
    let back = decode_event(&encode_event(&e).unwrap()).unwrap();
    assert_eq!(&*back.process.args[2], "échо 名前");
    assert_eq!(back.process.parent.as_ref().unwrap().pid, Some(64632));
    assert_eq!(back, e);
}

#[test]
fn a_huge_length_prefix_is_an_error_not_an_allocation() {
    for encode in [encode_event, encode_event_v1] {
        huge_length_prefix(encode);
    }
}

fn huge_length_prefix(encode_event: fn(&Event) -> Result<Vec<u8>, CodecError>) {
    // Default event, then overwrite the first string/list length we can find
    // with a varint claiming u64::MAX bytes.
    let e = Event {
        timestamp_ns: 0,
        ..Event::default()
    };
    let mut with_arg = e.clone();
    with_arg.process.args = vec!["x".into()];
    let plain = encode_event(&e).unwrap();
    let arg = encode_event(&with_arg).unwrap();
    // The first differing byte is the args length (0 vs 1).
    let at = plain.iter().zip(&arg).position(|(a, b)| a != b).unwrap();
    let mut bad = plain[..at].to_vec();
    bad.push(253); // varint marker: u64 follows
    bad.extend_from_slice(&u64::MAX.to_le_bytes());
    bad.extend_from_slice(&plain[at + 1..]);
    assert!(
        matches!(decode_event(&bad), Err(CodecError::Corrupt(_))),
        "{:?}",
        decode_event(&bad)
    );
}

/// Encodes (in version 1) an event whose process has `depth` nested parents,
/// built by splicing bytes so that neither encoding nor dropping a deep chain
/// is needed.
fn nested_parent_record(depth: usize) -> Vec<u8> {
    let flat = encode_event_v1(&Event::default()).unwrap();
    let mut one = Event::default();
    one.process.parent = Some(Arc::default());
    let nested = encode_event_v1(&one).unwrap();
    let at = flat.iter().zip(&nested).position(|(a, b)| a != b).unwrap();
    let unit = &nested[at..at + (nested.len() - flat.len())];
    let mut out = flat[..at].to_vec();
    for _ in 0..depth {
        out.extend_from_slice(unit);
    }
    out.extend_from_slice(&flat[at..]);
    out
}

#[test]
fn splicing_builds_real_nested_records() {
    let mut two = Event::default();
    two.process.parent = Some(Arc::new(Process {
        parent: Some(Arc::default()),
        ..Process::default()
    }));
    assert_eq!(nested_parent_record(2), encode_event_v1(&two).unwrap());
    assert_eq!(decode_event(&nested_parent_record(2)).unwrap(), two);
    assert_eq!(nested_parent_record_v2(2), encode_event(&two).unwrap());
    assert_eq!(decode_event(&nested_parent_record_v2(2)).unwrap(), two);
}

/// The version-2 form: parents are a counted list (of 14-byte empty
/// processes here), so the splice rewrites the count.
fn nested_parent_record_v2(parents: usize) -> Vec<u8> {
    let flat = encode_event(&Event::default()).unwrap();
    let mut one = Event::default();
    one.process.parent = Some(Arc::default());
    let nested = encode_event(&one).unwrap();
    let at = flat.iter().zip(&nested).position(|(a, b)| a != b).unwrap();
    assert_eq!((flat[at], nested[at]), (0, 1), "the parent count");
    let unit = &nested[at + 1..at + 1 + (nested.len() - flat.len())];
    assert_eq!(unit, &[0u8; 14]);
    let mut out = flat[..at].to_vec();
    if parents < 251 {
        out.push(parents as u8);
    } else {
        out.push(251);
        out.extend_from_slice(&(parents as u16).to_le_bytes());
    }
    for _ in 0..parents {
        out.extend_from_slice(unit);
    }
    out.extend_from_slice(&flat[at + 1..]);
    out
}

#[test]
fn a_deeply_nested_parent_chain_is_an_error_not_a_stack_overflow() {
    // ~15 bytes a level: well under the 1 MiB decode limit, far deeper than
    // any real process ancestry.
    for bytes in [
        nested_parent_record(50_000),
        nested_parent_record_v2(50_000),
    ] {
        assert!(bytes.len() < 1 << 20);
        match decode_event(&bytes) {
            Err(CodecError::Corrupt(m)) => assert!(m.contains("nest"), "{m}"),
            Err(other) => panic!("unexpected error kind: {other:?}"),
            Ok(_) => panic!("a 50 000-deep parent chain decoded"),
        }
    }
}

fn process_chain(depth: usize) -> Process {
    let mut p = Process {
        pid: Some(1),
        ..Process::default()
    };
    for pid in 2..=depth as u32 {
        p = Process {
            pid: Some(pid),
            parent: Some(Arc::new(p)),
            ..Process::default()
        };
    }
    p
}

#[test]
fn parent_chains_up_to_the_limit_round_trip_and_deeper_ones_refuse_to_encode() {
    use vigil_dsl::event::MAX_PROCESS_DEPTH;
    let mut e = proc_start(1, "deep");
    e.process = process_chain(MAX_PROCESS_DEPTH);
    assert_eq!(e.process.depth(), MAX_PROCESS_DEPTH);
    assert_eq!(decode_event(&encode_event(&e).unwrap()).unwrap(), e);

    e.process = process_chain(MAX_PROCESS_DEPTH + 1);
    assert!(matches!(encode_event(&e), Err(CodecError::Encode(_))));
    // And the same record, spliced by hand, is refused on the way in.
    let spliced = nested_parent_record(MAX_PROCESS_DEPTH);
    assert!(decode_event(&spliced).is_err());
    assert!(decode_event(&nested_parent_record(MAX_PROCESS_DEPTH - 1)).is_ok());
    // Version 2 counts parents: MAX_PROCESS_DEPTH processes in all.
    assert!(decode_event(&nested_parent_record_v2(MAX_PROCESS_DEPTH)).is_err());
    let ok = decode_event(&nested_parent_record_v2(MAX_PROCESS_DEPTH - 1)).unwrap();
    assert_eq!(ok.process.depth(), MAX_PROCESS_DEPTH);
}
