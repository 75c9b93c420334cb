use super::*;

fn event_with_names(names: &[&str]) -> Event {
    let mut e = Event::default();
    e.process.args = names.iter().map(|n| Text::from(*n)).collect();
    e
}

#[test]
fn full_hash_collisions_fall_back_to_exact_comparison() {
    let mut enc = EventEncoder::new();
    let mut out = Vec::new();
    enc.encode_into(&event_with_names(&["a"]), &mut out)
        .unwrap();
    // Pretend "b" and "c" hash like "a".
    let a_id = enc.by_hash[&full_hash(b"a")];
    enc.by_hash.insert(full_hash(b"b"), a_id);
    enc.by_hash.insert(full_hash(b"c"), a_id);
    enc.cache.fill(0);
    let e = event_with_names(&["b", "c", "a", "b", "c"]);
    let mut second = Vec::new();
    enc.encode_into(&e, &mut second).unwrap();
    assert_eq!(enc.dict_len(), 3);
    assert_eq!(enc.collided.len(), 2);
    enc.cache.fill(0);
    let mut third = Vec::new();
    enc.encode_into(&e, &mut third).unwrap();
    assert_eq!(enc.dict_len(), 3);
    let mut dec = BlockDecoder::new();
    dec.decode_view(&out).unwrap();
    assert_eq!(dec.decode_view(&second).unwrap().to_event(), e);
    assert_eq!(dec.decode_view(&third).unwrap().to_event(), e);
    // Rolling back the third record (which added nothing) keeps all.
    enc.rollback_last();
    assert_eq!(enc.dict_len(), 3);
}

#[test]
fn quick_hash_cache_hits_are_confirmed() {
    // Strings that agree on length, head, middle and tail still differ.
    let a = "0123456789-A-abcdefghij0123456789";
    let b = "0123456789-B-abcdefghij0123456789";
    let mut enc = EventEncoder::new();
    let e = event_with_names(&[a, b, a, b]);
    let mut out = Vec::new();
    enc.encode_into(&e, &mut out).unwrap();
    assert_eq!(enc.dict_len(), 2);
    let mut dec = BlockDecoder::new();
    assert_eq!(dec.decode_view(&out).unwrap().to_event(), e);
}

#[test]
fn shared_strings_found_by_address_decode_as_themselves() {
    // A prefix at the same address as its whole, one allocation shared
    // by several events, equal text in other allocations, and more
    // strings than the address cache has slots, across a rollback and
    // a reset.
    let whole = Text::from_static("abcdef");
    let prefix = Text::from_static(&"abcdef"[..3]);
    let shared = Text::from("shared");
    let many: Vec<Text> = (0..3 << PTR_BITS)
        .map(|i| Text::from(format!("s{i}")))
        .collect();
    let mut enc = EventEncoder::new();
    let mut blocks: Vec<Vec<(Vec<u8>, Event)>> = vec![Vec::new()];
    for (i, chunk) in many.chunks(7).enumerate() {
        let mut e = Event::default();
        e.process.args = chunk.to_vec();
        e.process.args.push(whole.clone());
        e.process.args.push(prefix.clone());
        e.process.args.push(Text::from("shared"));
        e.process.name = Some(shared.clone());
        e.host.id = Some(chunk[0].clone());
        let mut out = Vec::new();
        enc.encode_into(&e, &mut out).unwrap();
        if i % 97 == 5 {
            // Not stored after all: its new strings are forgotten.
            enc.rollback_last();
            continue;
        }
        blocks.last_mut().unwrap().push((out, e));
        if i == 1000 {
            enc.reset();
            blocks.push(Vec::new());
        }
    }
    for block in &blocks {
        let mut dec = BlockDecoder::new();
        for (bytes, e) in block {
            assert_eq!(&dec.decode_view(bytes).unwrap().to_event(), e);
        }
    }
}

#[test]
fn address_entries_end_with_their_generation_also_across_a_wrap() {
    // Long strings (looked up by content) next to their prefixes at the
    // same address, and generations that wrap around: every record still
    // decodes as the event it came from.
    let long: &'static str = Box::leak("x".repeat(40_000).into_boxed_str());
    let texts = [
        Text::from_static(long),
        Text::from_static(&long[..5]),
        Text::from_static(&long[..40]),
        Text::from("shared"),
    ];
    let mut enc = EventEncoder::new();
    enc.ptr_generation = u32::MAX - 2;
    for round in 0..6 {
        let mut records = Vec::new();
        for n in 1..=texts.len() {
            let mut e = Event::default();
            e.process.args = texts[..n].to_vec();
            e.process.name = Some(texts[n - 1].clone());
            let mut out = Vec::new();
            enc.encode_into(&e, &mut out).unwrap();
            records.push((out, e));
        }
        enc.reset();
        let mut dec = BlockDecoder::new();
        for (out, e) in &records {
            assert_eq!(
                &dec.decode_view(out).unwrap().to_event(),
                e,
                "round {round}"
            );
        }
    }
    assert!(enc.ptr_generation >= 1 && enc.ptr_generation < 10);
}
