//! Helpers shared by the integration tests: a proptest strategy for arbitrary
//! events and small builders for hand-made ones.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use vigil_dsl::event::{
    Category, CodeSignature, Endpoint, EventInfo, EventType, ExtraValue, Extras, File, Hash, Host,
    Network, Os, Process, Text, User,
};
use vigil_dsl::Event;

/// Text as sources produce it: ASCII paths, unicode names, control
/// characters, quotes and backslashes, and the empty string.
pub fn arb_text() -> BoxedStrategy<Text> {
    prop_oneof![
        3 => "[a-zA-Z0-9_./ -]{0,24}",
        2 => "\\PC{0,16}",
        1 => any::<String>(),
        1 => Just(String::new()),
        1 => prop::sample::select(vec![
            "Ünïcødé 名前 🚀".to_string(),
            "C:\\Windows\\System32\\cmd.exe".to_string(),
            "say \"hi\"\n\ttab".to_string(),
            "\u{0}nul\u{7f}".to_string(),
        ]),
    ]
    .prop_map(Text::from)
    .boxed()
}

pub fn opt_text() -> BoxedStrategy<Option<Text>> {
    option::of(arb_text()).boxed()
}

pub fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        // IPv4-mapped IPv6 stays IPv6.
        any::<[u8; 4]>().prop_map(|b| IpAddr::V6(Ipv4Addr::from(b).to_ipv6_mapped())),
    ]
}

pub fn arb_category() -> impl Strategy<Value = Category> {
    prop::sample::select(Category::ALL.to_vec())
}

pub fn arb_event_types() -> impl Strategy<Value = Vec<EventType>> {
    vec(prop::sample::select(EventType::ALL.to_vec()), 0..4)
}

fn arb_code_signature() -> impl Strategy<Value = CodeSignature> {
    (
        opt_text(),
        opt_text(),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
    )
        .prop_map(
            |(signing_id, team_id, trusted, platform_binary)| CodeSignature {
                signing_id,
                team_id,
                trusted,
                platform_binary,
            },
        )
}

// Strategies are boxed: in debug builds the value trees of large unboxed
// tuples overflow a test thread's stack.
fn arb_process_fields() -> BoxedStrategy<Process> {
    (
        (option::of(any::<u32>()), opt_text(), opt_text(), opt_text()),
        (vec(arb_text(), 0..5), opt_text(), opt_text()),
        (
            arb_code_signature(),
            opt_text(),
            opt_text(),
            option::of(any::<i32>()),
        ),
    )
        .prop_map(
            |(
                (pid, entity_id, name, executable),
                (args, command_line, working_directory),
                (code_signature, cdhash, sha256, exit_code),
            )| Process {
                pid,
                entity_id,
                name,
                executable,
                args,
                command_line,
                working_directory,
                code_signature,
                hash: Hash { cdhash, sha256 },
                exit_code,
                parent: None,
            },
        )
        .boxed()
}

/// A process with an optional parent (one level, as vigil builds them).
pub fn arb_process() -> BoxedStrategy<Process> {
    (arb_process_fields(), option::of(arb_process_fields()))
        .prop_map(|(mut p, parent)| {
            p.parent = parent.map(Arc::new);
            p
        })
        .boxed()
}

fn arb_endpoint() -> impl Strategy<Value = Endpoint> {
    (option::of(arb_ip()), option::of(any::<u16>())).prop_map(|(ip, port)| Endpoint { ip, port })
}

pub fn arb_event() -> BoxedStrategy<Event> {
    (
        (
            any::<i64>(),
            arb_category(),
            arb_event_types(),
            opt_text(),
            opt_text(),
            opt_text(),
        )
            .boxed(),
        (opt_text(), opt_text(), opt_text(), opt_text(), opt_text()).boxed(),
        arb_process(),
        (opt_text(), opt_text()).boxed(),
        option::of((opt_text(), opt_text(), opt_text(), opt_text())).boxed(),
        (option::of(arb_endpoint()), option::of(arb_endpoint())).boxed(),
        option::of((opt_text(), opt_text())).boxed(),
        arb_extras(),
    )
        .prop_map(
            |(
                (timestamp_ns, category, types, action, id, outcome),
                (host_id, host_name, os_type, family, version),
                process,
                (user_id, user_name),
                file,
                (source, destination),
                network,
                extra,
            )| Event {
                timestamp_ns,
                event: EventInfo {
                    category,
                    types,
                    action,
                    id,
                    outcome,
                },
                host: Host {
                    id: host_id,
                    name: host_name,
                    os: Os {
                        os_type,
                        family,
                        version,
                    },
                },
                process,
                user: User {
                    id: user_id,
                    name: user_name,
                },
                file: file.map(|(path, name, extension, target_path)| File {
                    path,
                    name,
                    extension,
                    target_path,
                }),
                source,
                destination,
                network: network.map(|(transport, direction)| Network {
                    transport,
                    direction,
                }),
                extra,
            },
        )
        .boxed()
}

/// Fields outside the schema, as a replayed ECS document carries them
/// (usually none).
pub fn arb_extras() -> BoxedStrategy<Extras> {
    let key = prop_oneof![
        Just("process.Ext.effective_parent.executable".to_string()),
        Just("process.code_signature.exists".to_string()),
        Just("event.dataset".to_string()),
        Just("dll.name".to_string()),
        Just("x".to_string()),
        "[a-z]{1,3}\\.[a-zA-Z_]{1,4}",
    ];
    let value = prop_oneof![
        any::<String>().prop_map(|s| ExtraValue::Str(s.into())),
        any::<i64>().prop_map(ExtraValue::Int),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite() && f.fract() != 0.0)
            .prop_map(|f| ExtraValue::Float(
                // As a JSON document writes it (and reads back).
                serde_json::Number::from_f64(f).unwrap().to_string().into()
            )),
        any::<bool>().prop_map(ExtraValue::Bool),
        vec(any::<String>(), 0..4)
            .prop_map(|l| ExtraValue::List(l.into_iter().map(Text::from).collect())),
    ];
    prop_oneof![
        3 => Just(Extras::default()),
        1 => vec((key, value), 1..6).prop_map(|pairs| {
            Extras::from_pairs(pairs.into_iter().map(|(k, v)| (Text::from(k), v)))
        }),
    ]
    .boxed()
}

/// A process-start event on host `h1` at `ts` seconds.
pub fn proc_start(ts_s: i64, name: &str) -> Event {
    let mut e = Event {
        timestamp_ns: ts_s * 1_000_000_000,
        ..Event::default()
    };
    e.event.category = Category::Process;
    e.event.types = vec![EventType::Start];
    e.host.id = Some("h1".into());
    e.process.name = Some(name.into());
    e
}
