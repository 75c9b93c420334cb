//! The typed event every source produces and every rule reads.
//!
//! Field names follow the Elastic Common Schema so that the serde form of an
//! [`Event`] *is* an ECS document, and rules written for Elastic read naturally.
//! Text fields that a source may not know are `Option`s: EQL treats a missing
//! field as `null`, which is not the same as an empty string.

use std::net::IpAddr;
use std::sync::Arc;

use bincode::de::Decoder;
use bincode::error::{AllowedEnumVariants, DecodeError};
use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::ecs_serde;
pub use crate::extra::{ExtraValue, Extras};

pub use crate::text::Text;

/// One observed fact about a host: a process started, a file was written, a
/// connection was made.
///
/// Its serde form is an ECS document: the typed fields, with [`Extras`]
/// (fields outside the schema that a replayed document carried) merged in
/// at their paths. Deserializing reads dotted keys as object paths and keeps
/// every field the typed schema does not read in `extra`.
#[derive(Debug, Clone, PartialEq, Default, Encode, Decode)]
pub struct Event {
    /// Nanoseconds since the Unix epoch (ECS `@timestamp`); 0 when a document
    /// has none (pipeline outputs and some alert exports omit it).
    pub timestamp_ns: i64,
    pub event: EventInfo,
    pub host: Host,
    pub process: Process,
    pub user: User,
    pub file: Option<File>,
    pub source: Option<Endpoint>,
    pub destination: Option<Endpoint>,
    pub network: Option<Network>,
    /// Fields outside the schema, by dotted path (empty for vigil's own
    /// sources). Not part of a version-1 record.
    pub extra: Extras,
}

/// [`Event`]'s typed fields as serde sees them (serde's remote derive: the
/// hand-written impls below add the extras).
#[derive(Serialize, Deserialize)]
#[serde(remote = "Event")]
struct TypedEvent {
    #[serde(rename = "@timestamp", default, with = "ecs_serde::timestamp")]
    timestamp_ns: i64,
    #[serde(default)]
    event: EventInfo,
    #[serde(default)]
    host: Host,
    #[serde(default)]
    process: Process,
    #[serde(default, skip_serializing_if = "User::is_empty")]
    user: User,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<File>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    destination: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    network: Option<Network>,
    #[serde(skip)]
    extra: Extras,
}

struct AsTyped<'a>(&'a Event);

impl Serialize for AsTyped<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        TypedEvent::serialize(self.0, s)
    }
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.extra.is_empty() {
            return TypedEvent::serialize(self, s);
        }
        let mut doc = serde_json::to_value(AsTyped(self)).map_err(serde::ser::Error::custom)?;
        self.extra.merge_into(&mut doc);
        doc.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Event, D::Error> {
        let mut doc = serde_json::Value::deserialize(d)?;
        crate::ecs::expand_dotted_keys(&mut doc);
        Event::from_document(&doc).map_err(serde::de::Error::custom)
    }
}

impl Event {
    /// The event an expanded ECS document (no dotted keys) describes: its
    /// typed fields, and every other field as an extra.
    pub fn from_document(doc: &serde_json::Value) -> Result<Event, String> {
        let mut event = TypedEvent::deserialize(doc).map_err(|e| e.to_string())?;
        event.extra = Extras::from_document(doc)?;
        Ok(event)
    }
}

/// ECS `event.*`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, Encode, Decode)]
pub struct EventInfo {
    #[serde(default, with = "ecs_serde::category")]
    pub category: Category,
    #[serde(
        default,
        rename = "type",
        with = "ecs_serde::event_types",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub types: Vec<EventType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Text>,
    #[serde(
        default,
        with = "ecs_serde::opt_string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub id: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Text>,
}

/// The ECS categories vigil routes rules by. ECS allows several per event;
/// vigil keeps the most specific one (see [`Category::from_ecs_list`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Encode, Decode)]
pub enum Category {
    Process,
    File,
    Network,
    Authentication,
    Session,
    Iam,
    Configuration,
    Library,
    Malware,
    Package,
    Host,
    #[default]
    Other,
}

impl Category {
    pub const ALL: [Category; 12] = [
        Category::Process,
        Category::File,
        Category::Network,
        Category::Authentication,
        Category::Session,
        Category::Iam,
        Category::Configuration,
        Category::Library,
        Category::Malware,
        Category::Package,
        Category::Host,
        Category::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Process => "process",
            Category::File => "file",
            Category::Network => "network",
            Category::Authentication => "authentication",
            Category::Session => "session",
            Category::Iam => "iam",
            Category::Configuration => "configuration",
            Category::Library => "library",
            Category::Malware => "malware",
            Category::Package => "package",
            Category::Host => "host",
            Category::Other => "other",
        }
    }

    /// Parses one ECS category name; unknown names are `None`.
    pub fn parse(name: &str) -> Option<Category> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(name))
            .or_else(|| {
                name.eq_ignore_ascii_case("intrusion_detection")
                    .then_some(Category::Malware)
            })
    }

    /// ECS lists often pair a specific category with the generic `host`
    /// (`["host", "file"]`); the specific one is what rules select on.
    pub fn from_ecs_list<'a>(names: impl IntoIterator<Item = &'a str>) -> Category {
        let mut best = Category::Other;
        for c in names.into_iter().filter_map(Category::parse) {
            if best == Category::Other || (best == Category::Host && c != Category::Host) {
                best = c;
            }
        }
        best
    }

    /// Index into per-category tables.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// ECS `event.type` allowed values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub enum EventType {
    Access,
    Admin,
    Allowed,
    Change,
    Connection,
    Creation,
    Deletion,
    Denied,
    End,
    Error,
    Group,
    Indicator,
    Info,
    Installation,
    Protocol,
    Start,
    User,
}

impl EventType {
    pub const ALL: [EventType; 17] = [
        EventType::Access,
        EventType::Admin,
        EventType::Allowed,
        EventType::Change,
        EventType::Connection,
        EventType::Creation,
        EventType::Deletion,
        EventType::Denied,
        EventType::End,
        EventType::Error,
        EventType::Group,
        EventType::Indicator,
        EventType::Info,
        EventType::Installation,
        EventType::Protocol,
        EventType::Start,
        EventType::User,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Access => "access",
            EventType::Admin => "admin",
            EventType::Allowed => "allowed",
            EventType::Change => "change",
            EventType::Connection => "connection",
            EventType::Creation => "creation",
            EventType::Deletion => "deletion",
            EventType::Denied => "denied",
            EventType::End => "end",
            EventType::Error => "error",
            EventType::Group => "group",
            EventType::Indicator => "indicator",
            EventType::Info => "info",
            EventType::Installation => "installation",
            EventType::Protocol => "protocol",
            EventType::Start => "start",
            EventType::User => "user",
        }
    }

    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(name))
    }
}

/// ECS `host.*`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, Encode, Decode)]
pub struct Host {
    #[serde(
        default,
        with = "ecs_serde::opt_string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub id: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Text>,
    #[serde(default, skip_serializing_if = "Os::is_empty")]
    pub os: Os,
}

/// ECS `host.os.*`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, Encode, Decode)]
pub struct Os {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub os_type: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Text>,
}

impl Host {
    /// The same host with its strings made static. A source keeps its host
    /// for its whole life and clones it into every event: static strings
    /// clone and drop without touching a count that other cores read next
    /// to the bytes. Call once per source, not per event (each call leaks).
    pub fn leaked(self) -> Host {
        fn leak(t: Option<Text>) -> Option<Text> {
            t.map(|t| {
                if t.is_static() {
                    t
                } else {
                    Text::leak(t.to_string())
                }
            })
        }
        Host {
            id: leak(self.id),
            name: leak(self.name),
            os: Os {
                os_type: leak(self.os.os_type),
                family: leak(self.os.family),
                version: leak(self.os.version),
            },
        }
    }
}

impl Os {
    fn is_empty(&self) -> bool {
        self == &Os::default()
    }
}

/// ECS `process.*`. `parent` holds the same fields one level up; vigil never
/// nests deeper than that (ancestry comes from the process table instead).
/// `Decode` is written by hand: see [`MAX_PROCESS_DEPTH`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, Encode)]
pub struct Process {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(
        default,
        with = "ecs_serde::opt_string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub entity_id: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<Text>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_line: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<Text>,
    #[serde(default, skip_serializing_if = "CodeSignature::is_empty")]
    pub code_signature: CodeSignature,
    #[serde(default, skip_serializing_if = "Hash::is_empty")]
    pub hash: Hash,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Arc<Process>>,
}

/// The deepest `process.parent` chain the binary codec reads or writes: far
/// beyond any real ancestry (ECS JSON input stops near 128 levels), and
/// shallow enough that a corrupt record claiming a million parents is an
/// error instead of a stack overflow.
pub const MAX_PROCESS_DEPTH: usize = 256;

impl Process {
    /// This process plus its chain of parents.
    pub fn depth(&self) -> usize {
        std::iter::successors(Some(self), |p| p.parent.as_deref()).count()
    }
}

/// Field order matches the derived `Encode`. Parents are decoded in a loop,
/// not recursively, so garbage cannot exhaust the stack.
impl<Context> Decode<Context> for Process {
    fn decode<D: Decoder<Context = Context>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let mut chain: Vec<Process> = Vec::new();
        loop {
            chain.push(Process {
                pid: Decode::decode(decoder)?,
                entity_id: Decode::decode(decoder)?,
                name: Decode::decode(decoder)?,
                executable: Decode::decode(decoder)?,
                args: Decode::decode(decoder)?,
                command_line: Decode::decode(decoder)?,
                working_directory: Decode::decode(decoder)?,
                code_signature: Decode::decode(decoder)?,
                hash: Decode::decode(decoder)?,
                exit_code: Decode::decode(decoder)?,
                parent: None,
            });
            // `Option<Arc<Process>>`: a one-byte tag, then the parent.
            match u8::decode(decoder)? {
                0 => break,
                1 if chain.len() < MAX_PROCESS_DEPTH => {}
                1 => {
                    return Err(DecodeError::OtherString(format!(
                        "process.parent nests deeper than {MAX_PROCESS_DEPTH} levels"
                    )))
                }
                found => {
                    return Err(DecodeError::UnexpectedVariant {
                        type_name: "Option<Arc<Process>>",
                        allowed: &AllowedEnumVariants::Range { min: 0, max: 1 },
                        found: found as u32,
                    })
                }
            }
        }
        let mut child: Option<Process> = None;
        while let Some(mut p) = chain.pop() {
            p.parent = child.map(Arc::new);
            child = Some(p);
        }
        Ok(child.expect("the loop pushes at least one process"))
    }
}

bincode::impl_borrow_decode!(Process);

/// ECS `process.code_signature.*` (macOS signing facts).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, Encode, Decode)]
pub struct CodeSignature {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_id: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_binary: Option<bool>,
}

impl CodeSignature {
    fn is_empty(&self) -> bool {
        self == &CodeSignature::default()
    }
}

/// ECS `process.hash.*`; macOS identifies code by its cdhash.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, Encode, Decode)]
pub struct Hash {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdhash: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Text>,
}

impl Hash {
    fn is_empty(&self) -> bool {
        self == &Hash::default()
    }
}

/// ECS `user.*`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, Encode, Decode)]
pub struct User {
    #[serde(
        default,
        with = "ecs_serde::opt_string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub id: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Text>,
}

impl User {
    fn is_empty(&self) -> bool {
        self == &User::default()
    }
}

/// ECS `file.*`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, Encode, Decode)]
pub struct File {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_path: Option<Text>,
}

impl File {
    /// A file record with `name` and `extension` derived from `path`, as ECS
    /// producers fill them.
    pub fn from_path(path: &str) -> File {
        let name = path.rsplit('/').next().unwrap_or(path);
        let extension = name
            .rsplit_once('.')
            .filter(|(stem, ext)| !stem.is_empty() && !ext.is_empty())
            .map(|(_, ext)| Text::from(ext));
        File {
            path: Some(path.into()),
            name: Some(name.into()),
            extension,
            target_path: None,
        }
    }
}

/// ECS `source.*` / `destination.*`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, Encode, Decode)]
pub struct Endpoint {
    #[serde(
        default,
        with = "ecs_serde::opt_ip",
        skip_serializing_if = "Option::is_none"
    )]
    pub ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// ECS `network.*`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, Encode, Decode)]
pub struct Network {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Text>,
}

impl Event {
    /// Whether `event.type` holds `t`.
    pub fn has_type(&self, t: EventType) -> bool {
        self.event.types.contains(&t)
    }
}
