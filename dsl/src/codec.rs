//! The binary form of an [`Event`] stored in the spool: one format-version
//! byte, then a body in bincode 2's standard encoding (varint integers). Old
//! versions stay decodable by matching on the version byte.
//!
//! # Version 2: block-scoped string interning
//!
//! Events repeat the same few hundred strings (host, user, executables,
//! command lines, entity ids), so a version-2 record stores every string as a
//! **symbol**: `0` is a missing string (`None`), `k > 0` is entry `k - 1` of
//! a dictionary that the records of one spool block build up in order. A
//! record first lists the strings it adds to the dictionary, then the event
//! with symbols in place of strings:
//!
//! ```text
//! record     := 0x02  new_strings  event_syms
//! new_strings:= varint(n) n × (varint(len) len × u8)     -- UTF-8; become entries
//!                                                          -- dict_len .. dict_len + n
//! event_syms := zigzag(@timestamp) varint(category) varint(type_mask)
//!               type_order                                -- empty when the types are
//!               sym(event.action) sym(event.id) sym(event.outcome)   -- in canonical order
//!               sym(host.id) sym(host.name) sym(os.type) sym(os.family) sym(os.version)
//!               proc                                      -- process
//!               varint(p) p × proc                        -- process.parent, its parent, …
//!               sym(user.id) sym(user.name)
//!               opt(sym(path) sym(name) sym(extension) sym(target_path))   -- file
//!               opt(endpoint) opt(endpoint)               -- source, destination
//!               opt(sym(transport) sym(direction))        -- network
//! type_order := varint(k) k × varint(EventType index)
//! proc       := opt(varint(pid)) sym(entity_id) sym(name) sym(executable)
//!               varint(a) a × sym                         -- args
//!               sym(command_line) sym(working_directory) sym(signing_id) sym(team_id)
//!               opt(bool trusted) opt(bool platform_binary) sym(cdhash) sym(sha256)
//!               opt(zigzag(exit_code))
//! endpoint   := opt(varint(0) 4 × u8 | varint(1) 16 × u8)  opt(varint(port))
//! opt(x)     := 0x00 | 0x01 x          bool := 0x00 | 0x01         sym := varint
//! varint     := bincode's: < 251 in one byte; 251/252/253 + u16/u32/u64 little-endian
//! ```
//!
//! This is exactly bincode 2 (`config::standard()`) of
//! `(Vec<String>, EventSyms-as-laid-out-above)`; the coder is hand-written so
//! that encoding reuses its buffers and decoding allocates nothing per event.
//!
//! The dictionary restarts empty at every block ([`EventEncoder::reset`],
//! [`BlockDecoder::reset`]), so blocks stay independently readable, and a
//! reader must decode (or [`BlockDecoder::skip_next`]) every record of a block
//! in order. A record that uses a symbol no earlier record (or itself) defined
//! is corrupt. A standalone version-2 record ([`encode_event`]) is one encoded
//! with an empty dictionary.
//!
//! Version 1 (still decoded, no longer written by the spool) is bincode 2 of
//! the [`Event`] itself.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bincode::config::{self, Configuration};
use thiserror::Error;

use crate::event::{
    Category, CodeSignature, Endpoint, Event, EventInfo, EventType, File, Hash, Host, Network, Os,
    Process, Text, User, MAX_PROCESS_DEPTH,
};

/// Current encoding version, written by [`encode_event`] and [`EventEncoder`].
pub const FORMAT_VERSION: u8 = 2;

/// The first encoding: bincode of the whole [`Event`], strings inline.
pub const FORMAT_VERSION_V1: u8 = 1;

/// Upper bound on what a single decoded event may allocate; protects readers
/// from a corrupt length prefix.
const DECODE_LIMIT: usize = 1 << 20;

type Config =
    config::Configuration<config::LittleEndian, config::Varint, config::Limit<DECODE_LIMIT>>;

fn bincode_config() -> Config {
    config::standard().with_limit::<DECODE_LIMIT>()
}

fn encode_config() -> Configuration {
    config::standard()
}

#[derive(Debug, Error)]
pub enum CodecError {
    #[error("empty event record")]
    Empty,
    #[error("unsupported event format version {0} (this build reads versions 1 and 2)")]
    UnsupportedVersion(u8),
    #[error("corrupt event record: {0}")]
    Corrupt(String),
    #[error("event record has {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("cannot encode event: {0}")]
    Encode(String),
}

fn corrupt(what: impl Into<String>) -> CodecError {
    CodecError::Corrupt(what.into())
}

fn check_depth(event: &Event) -> Result<(), CodecError> {
    if event.process.depth() > MAX_PROCESS_DEPTH {
        // It would not decode again.
        return Err(CodecError::Encode(format!(
            "process.parent nests deeper than {MAX_PROCESS_DEPTH} levels"
        )));
    }
    Ok(())
}

/// Appends `event` as a standalone version-2 record (its own dictionary) to
/// `out`. Spool writers use one [`EventEncoder`] per block instead, which is
/// what makes the encoding small.
pub fn encode_event_into(event: &Event, out: &mut Vec<u8>) -> Result<(), CodecError> {
    EventEncoder::new().encode_into(event, out)
}

/// A standalone version-2 record.
pub fn encode_event(event: &Event) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(256);
    encode_event_into(event, &mut out)?;
    Ok(out)
}

/// Appends `event` as a version-1 record (what older builds wrote). Kept so
/// that compatibility can be tested; new spools are written in version 2.
pub fn encode_event_v1_into(event: &Event, out: &mut Vec<u8>) -> Result<(), CodecError> {
    check_depth(event)?;
    out.push(FORMAT_VERSION_V1);
    bincode::encode_into_writer(event, VecWriter(out), encode_config())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Appends to a `Vec` without `std::io::Write`'s per-call overhead (the
/// correlator encodes every event it holds).
struct VecWriter<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for VecWriter<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        match bytes {
            [b] => self.0.push(*b),
            _ => self.0.extend_from_slice(bytes),
        }
        Ok(())
    }
}

/// A version-1 record.
pub fn encode_event_v1(event: &Event) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(512);
    encode_event_v1_into(event, &mut out)?;
    Ok(out)
}

/// Decodes one standalone record: version 1, or version 2 encoded with an
/// empty dictionary ([`encode_event`]). Garbage gives an error, never a panic.
pub fn decode_event(bytes: &[u8]) -> Result<Event, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    match version {
        FORMAT_VERSION_V1 => decode_v1(body),
        FORMAT_VERSION => {
            let mut d = BlockDecoder::new();
            d.decode_v2(body).map(|v| v.to_event())
        }
        v => Err(CodecError::UnsupportedVersion(v)),
    }
}

fn decode_v1(body: &[u8]) -> Result<Event, CodecError> {
    let (event, used): (Event, usize) = bincode::decode_from_slice(body, bincode_config())
        .map_err(|e| CodecError::Corrupt(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::TrailingBytes(body.len() - used));
    }
    Ok(event)
}

// ---------------------------------------------------------------------------
// Writing.

#[inline]
fn put_varint(out: &mut Vec<u8>, v: u64) {
    if v < 251 {
        out.push(v as u8);
    } else if v <= u64::from(u16::MAX) {
        out.push(251);
        out.extend_from_slice(&(v as u16).to_le_bytes());
    } else if v <= u64::from(u32::MAX) {
        out.push(252);
        out.extend_from_slice(&(v as u32).to_le_bytes());
    } else {
        out.push(253);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn put_opt_varint(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        None => out.push(0),
        Some(x) => {
            out.push(1);
            put_varint(out, x);
        }
    }
}

#[inline]
fn put_opt_bool(out: &mut Vec<u8>, v: Option<bool>) {
    match v {
        None => out.push(0),
        Some(b) => out.extend_from_slice(&[1, u8::from(b)]),
    }
}

fn put_endpoint(out: &mut Vec<u8>, e: &Option<Endpoint>) {
    let Some(e) = e else {
        out.push(0);
        return;
    };
    out.push(1);
    match e.ip {
        None => out.push(0),
        Some(IpAddr::V4(v4)) => {
            out.extend_from_slice(&[1, 0]);
            out.extend_from_slice(&v4.octets());
        }
        Some(IpAddr::V6(v6)) => {
            out.extend_from_slice(&[1, 1]);
            out.extend_from_slice(&v6.octets());
        }
    }
    put_opt_varint(out, e.port.map(u64::from));
}

/// The `event.type` bitmask (bit i = `EventType::ALL[i]`) and whether the
/// list is in canonical order (strictly ascending, so the mask alone
/// reproduces it).
fn type_mask(types: &[EventType]) -> (u32, bool) {
    let mut mask = 0u32;
    let mut canonical = true;
    let mut last: Option<u32> = None;
    for &t in types {
        let i = t as u32;
        mask |= 1 << i;
        canonical &= last.is_none_or(|l| l < i);
        last = Some(i);
    }
    (mask, canonical)
}

const HASH_K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// A 64-bit hash of a whole string, for the dictionary's lookups (only
/// in memory: record bytes do not depend on it).
#[inline]
fn full_hash(bytes: &[u8]) -> u64 {
    crate::fasthash::hash_bytes(0, bytes)
}

/// Hashes a `u64` key that already is a hash: the identity.
#[derive(Default, Clone, Copy)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; anything else still hashes correctly.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(HASH_K);
        }
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Full string hash → symbol index of the first string with that hash.
type ByHash = HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>;

/// Slots of the encoder's direct-mapped cache of recent strings.
const CACHE_BITS: u32 = 14;

/// Slots of the encoder's cache of shared strings by address. Small enough
/// to stay in a core's cache between the spool thread's batches (64 KiB): at
/// a few thousand events a second, a bigger table is mostly cold misses.
const PTR_BITS: u32 = 12;

/// A cheap hash of a string's length and a few of its bytes (first, middle,
/// last eight), for the direct-mapped cache. Collisions only cost a miss:
/// a hit is always confirmed by comparing the whole string.
#[inline(always)]
fn quick_hash(s: &[u8]) -> usize {
    let n = s.len();
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let (a, b, m) = if n >= 8 {
        (word(0), word(n - 8), word((n - 8) / 2))
    } else {
        let mut w = [0u8; 8];
        w[..n].copy_from_slice(s);
        (u64::from_le_bytes(w), 0, 0)
    };
    let h = (a ^ 0x243f_6a88_85a3_08d3).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (b ^ (n as u64)).wrapping_mul(0xbf58_476d_1ce4_e5b9)
        ^ (m ^ 0x1319_8a2e_0370_7344).wrapping_mul(0x94d0_49bb_1331_11eb);
    (h >> (64 - CACHE_BITS)) as usize
}

/// A `by_ptr` entry: a shared string ([`ptr_key`]) and its symbol, in 16
/// bytes (one cache line holds four).
#[derive(Clone, Copy, Default)]
struct PtrEntry {
    key: u64,
    sym: u32,
    generation: u32,
}

/// A string's address and length (`Text::addr`, whose top length bit is
/// its kind) in one word: user-space addresses fit in 48 bits on every
/// target we build for. Strings that do not fit (long ones, or an address
/// beyond 48 bits) are looked up by content instead.
#[inline(always)]
fn ptr_key((addr, len): (usize, usize)) -> Option<u64> {
    let shared = (len >> (usize::BITS - 1)) as u64;
    let len = (len << 1 >> 1) as u64;
    let addr = addr as u64;
    (addr < 1 << 48 && len < 1 << 15).then_some(addr | len << 48 | shared << 63)
}

/// Slots of the encoder's parent memo: a child's events come in runs, and
/// a busy host has a few dozen parents with children active at once.
const PARENT_SLOTS: usize = 64;

/// One parent the encoder met, held, and the bytes `put_process` wrote for
/// it (valid in `generation` only).
#[derive(Default)]
struct ParentEntry {
    process: Option<Arc<Process>>,
    generation: u32,
    bytes: Vec<u8>,
}

/// Encodes events into version-2 records against a dictionary that grows
/// with every record, until [`reset`](EventEncoder::reset). One encoder
/// writes the records of one spool block; reset it exactly where the block
/// ends, so that the first record of every block starts from an empty
/// dictionary.
pub struct EventEncoder {
    /// The dictionary's strings, end to end (no allocation per string).
    arena: Vec<u8>,
    /// Symbol index → (start, length) in `arena`.
    spans: Vec<(u32, u32)>,
    /// Full hash → symbol index.
    by_hash: ByHash,
    /// The rare strings whose full hash another string already has.
    collided: HashMap<Box<str>, u32>,
    /// `quick_hash` → symbol (index + 1; 0 is empty): most strings of an
    /// event were seen recently, and one comparison confirms them without
    /// hashing the whole string.
    cache: Box<[u32]>,
    /// Slot of a shared string's address (`Text::addr_hash`) → its key,
    /// symbol + 1 and generation: strings sources share between events are
    /// recognised by address, without reading their bytes (which another
    /// core wrote). An entry counts only in the generation that made it.
    by_ptr: Box<[PtrEntry]>,
    /// Bumped whenever symbols are forgotten (reset, rollback): every
    /// older `by_ptr` entry then misses.
    ptr_generation: u32,
    /// Symbol index → the shared string it was first seen as. Holding it
    /// keeps that address from being reused for other text while a
    /// `by_ptr` entry of this generation names it: an entry is made only
    /// for the address held for its symbol, and held strings change only
    /// with the generation. So a hit needs no look at the string.
    held: Vec<Option<Text>>,
    /// Shared parents (`process.parent` is an `Arc` the agent's process
    /// table hands every event of a child) met in this generation, by
    /// address, with their encoding: the next event of a child copies those
    /// bytes instead of looking up each of the parent's strings again.
    parents: Box<[ParentEntry]>,
    /// The strings the record being encoded adds, each as varint length + bytes.
    new_strings: Vec<u8>,
    new_count: u64,
    body: Vec<u8>,
    /// Dictionary size before the last record (for `rollback_last`).
    mark: u32,
}

impl Default for EventEncoder {
    fn default() -> EventEncoder {
        EventEncoder {
            arena: Vec::new(),
            spans: Vec::new(),
            by_hash: ByHash::default(),
            collided: HashMap::new(),
            cache: vec![0; 1 << CACHE_BITS].into_boxed_slice(),
            by_ptr: vec![PtrEntry::default(); 1 << PTR_BITS].into_boxed_slice(),
            ptr_generation: 1,
            held: Vec::new(),
            parents: (0..PARENT_SLOTS).map(|_| ParentEntry::default()).collect(),
            new_strings: Vec::new(),
            new_count: 0,
            body: Vec::new(),
            mark: 0,
        }
    }
}

impl EventEncoder {
    pub fn new() -> EventEncoder {
        EventEncoder::default()
    }

    /// Forgets the dictionary: the next record starts a new block.
    pub fn reset(&mut self) {
        self.arena.clear();
        self.spans.clear();
        self.by_hash.clear();
        self.collided.clear();
        self.cache.fill(0);
        self.held.clear();
        self.forget_addresses();
        self.mark = 0;
    }

    /// Ends the generation of every `by_ptr` entry (their symbols or held
    /// strings are gone).
    fn forget_addresses(&mut self) {
        self.ptr_generation = self.ptr_generation.wrapping_add(1);
        if self.ptr_generation == 0 {
            // Entries of the generation before the last wrap would count again.
            self.by_ptr.fill(PtrEntry::default());
            self.parents.fill_with(ParentEntry::default);
            self.ptr_generation = 1;
        }
    }

    /// Strings in the dictionary.
    pub fn dict_len(&self) -> usize {
        self.spans.len()
    }

    #[inline(always)]
    fn bytes_of(&self, id: u32) -> Option<&[u8]> {
        let &(start, len) = self.spans.get(id as usize)?;
        self.arena.get(start as usize..(start + len) as usize)
    }

    /// Forgets the strings the last [`encode_into`](Self::encode_into) added,
    /// for when its record was not stored after all.
    pub fn rollback_last(&mut self) {
        let mark = self.mark;
        if let Some(&(start, _)) = self.spans.get(mark as usize) {
            self.by_hash.retain(|_, id| *id < mark);
            self.collided.retain(|_, id| *id < mark);
            self.spans.truncate(mark as usize);
            self.held.truncate(mark as usize);
            self.forget_addresses();
            self.arena.truncate(start as usize);
            // Cache entries past `mark` now miss (or are re-confirmed by
            // comparison once the ids are reused).
        }
    }

    /// Appends `event` as one version-2 record to `out`, defining in it the
    /// strings the dictionary does not hold yet.
    pub fn encode_into(&mut self, event: &Event, out: &mut Vec<u8>) -> Result<(), CodecError> {
        check_depth(event)?;
        if self.arena.len() >= 1 << 31 {
            // Spans are u32: a dictionary this large was never reset.
            return Err(CodecError::Encode(
                "string dictionary over 2 GiB: reset the encoder at block boundaries".into(),
            ));
        }
        self.mark = self.spans.len() as u32;
        self.new_strings.clear();
        self.new_count = 0;
        let mut body = std::mem::take(&mut self.body);
        body.clear();
        self.put_event(event, &mut body);
        out.reserve(1 + 9 + self.new_strings.len() + body.len());
        out.push(FORMAT_VERSION);
        put_varint(out, self.new_count);
        out.extend_from_slice(&self.new_strings);
        out.extend_from_slice(&body);
        self.body = body;
        Ok(())
    }

    #[inline]
    fn intern(&mut self, s: &str) -> u64 {
        let slot = quick_hash(s.as_bytes());
        let cached = self.cache[slot];
        if cached != 0 && self.bytes_of(cached - 1) == Some(s.as_bytes()) {
            return u64::from(cached);
        }
        let id = self.intern_slow(s);
        self.cache[slot] = id + 1;
        u64::from(id) + 1
    }

    #[inline(never)]
    fn intern_slow(&mut self, s: &str) -> u32 {
        let h = full_hash(s.as_bytes());
        let id = self.spans.len() as u32;
        match self.by_hash.get(&h) {
            Some(&known) if self.bytes_of(known) == Some(s.as_bytes()) => return known,
            Some(_) => {
                if let Some(&known) = self.collided.get(s) {
                    return known;
                }
                self.collided.insert(s.into(), id);
            }
            None => {
                self.by_hash.insert(h, id);
            }
        }
        self.spans.push((self.arena.len() as u32, s.len() as u32));
        self.arena.extend_from_slice(s.as_bytes());
        put_varint(&mut self.new_strings, s.len() as u64);
        self.new_strings.extend_from_slice(s.as_bytes());
        self.new_count += 1;
        id
    }

    /// [`intern`](Self::intern) for a shared string: by address when this
    /// block already met this very allocation, by content otherwise.
    #[inline]
    fn intern_text(&mut self, t: &Text) -> u64 {
        let addr = t.addr();
        let Some(key) = ptr_key(addr) else {
            return self.intern(t);
        };
        let slot = (t.addr_hash() >> (64 - PTR_BITS)) as usize;
        let seen = self.by_ptr[slot];
        if seen.key == key && seen.generation == self.ptr_generation {
            return u64::from(seen.sym);
        }
        let sym = self.intern(t);
        let id = sym as usize - 1;
        if self.held.len() <= id {
            self.held.resize(id + 1, None);
        }
        let entry = PtrEntry {
            key,
            sym: sym as u32,
            generation: self.ptr_generation,
        };
        match &self.held[id] {
            None => {
                self.held[id] = Some(t.clone());
                self.by_ptr[slot] = entry;
            }
            // Its slot was taken by another string since: take it back.
            Some(h) if h.addr() == addr => self.by_ptr[slot] = entry,
            Some(_) => {}
        }
        sym
    }

    #[inline]
    fn sym(&mut self, s: &Option<Text>, out: &mut Vec<u8>) {
        let v = match s {
            None => 0,
            Some(s) => self.intern_text(s),
        };
        put_varint(out, v);
    }

    fn put_event(&mut self, e: &Event, b: &mut Vec<u8>) {
        put_varint(b, zigzag(e.timestamp_ns));
        put_varint(b, e.event.category.index() as u64);
        let (mask, canonical) = type_mask(&e.event.types);
        put_varint(b, u64::from(mask));
        if canonical {
            b.push(0);
        } else {
            put_varint(b, e.event.types.len() as u64);
            for &t in &e.event.types {
                put_varint(b, t as u64);
            }
        }
        self.sym(&e.event.action, b);
        self.sym(&e.event.id, b);
        self.sym(&e.event.outcome, b);
        self.sym(&e.host.id, b);
        self.sym(&e.host.name, b);
        self.sym(&e.host.os.os_type, b);
        self.sym(&e.host.os.family, b);
        self.sym(&e.host.os.version, b);
        self.put_process(&e.process, b);
        put_varint(b, (e.process.depth() - 1) as u64);
        let mut p = e.process.parent.as_ref();
        while let Some(parent) = p {
            self.put_parent(parent, b);
            p = parent.parent.as_ref();
        }
        self.sym(&e.user.id, b);
        self.sym(&e.user.name, b);
        match &e.file {
            None => b.push(0),
            Some(f) => {
                b.push(1);
                self.sym(&f.path, b);
                self.sym(&f.name, b);
                self.sym(&f.extension, b);
                self.sym(&f.target_path, b);
            }
        }
        put_endpoint(b, &e.source);
        put_endpoint(b, &e.destination);
        match &e.network {
            None => b.push(0),
            Some(n) => {
                b.push(1);
                self.sym(&n.transport, b);
                self.sym(&n.direction, b);
            }
        }
    }

    /// [`put_process`](Self::put_process) for a parent, from the parent
    /// memo when this generation already encoded this very `Arc`. The memo
    /// holds the `Arc`, so its address names no other process meanwhile, and
    /// a shared `Process` is never changed in place (`Arc::make_mut` copies
    /// it); the symbols its bytes name stay defined for the generation.
    fn put_parent(&mut self, p: &Arc<Process>, b: &mut Vec<u8>) {
        let slot = (crate::fasthash::addr_hash(Arc::as_ptr(p) as usize)
            >> (64 - PARENT_SLOTS.trailing_zeros())) as usize;
        let seen = &self.parents[slot];
        if seen.generation == self.ptr_generation
            && seen.process.as_ref().is_some_and(|h| Arc::ptr_eq(h, p))
        {
            b.extend_from_slice(&seen.bytes);
            return;
        }
        let start = b.len();
        self.put_process(p, b);
        let entry = &mut self.parents[slot];
        entry.process = Some(Arc::clone(p));
        entry.generation = self.ptr_generation;
        entry.bytes.clear();
        entry.bytes.extend_from_slice(&b[start..]);
    }

    fn put_process(&mut self, p: &Process, b: &mut Vec<u8>) {
        put_opt_varint(b, p.pid.map(u64::from));
        self.sym(&p.entity_id, b);
        self.sym(&p.name, b);
        self.sym(&p.executable, b);
        put_varint(b, p.args.len() as u64);
        for a in &p.args {
            let v = self.intern_text(a);
            put_varint(b, v);
        }
        self.sym(&p.command_line, b);
        self.sym(&p.working_directory, b);
        self.sym(&p.code_signature.signing_id, b);
        self.sym(&p.code_signature.team_id, b);
        put_opt_bool(b, p.code_signature.trusted);
        put_opt_bool(b, p.code_signature.platform_binary);
        self.sym(&p.hash.cdhash, b);
        self.sym(&p.hash.sha256, b);
        put_opt_varint(b, p.exit_code.map(|c| zigzag(i64::from(c))));
    }
}

// ---------------------------------------------------------------------------
// Reading.

/// A bounds-checked cursor over one record body.
struct Cur<'a> {
    buf: &'a [u8],
    pos: usize,
}

#[cold]
fn truncated() -> CodecError {
    corrupt("record ends early")
}

#[cold]
fn undefined_symbol(s: u32, dict_len: u32) -> CodecError {
    corrupt(format!(
        "symbol {s} is not defined (the block's dictionary has {dict_len} strings so far)"
    ))
}

#[cold]
fn bad_tag(t: u8) -> CodecError {
    corrupt(format!("invalid option/bool tag {t}"))
}

impl<'a> Cur<'a> {
    fn new(buf: &'a [u8]) -> Cur<'a> {
        Cur { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline(always)]
    fn u8(&mut self) -> Result<u8, CodecError> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(truncated()),
        }
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.remaining() < n {
            return Err(truncated());
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// A varint no wider than `max_tag` allows (251: u16, 252: u32, 253: u64).
    #[inline(always)]
    fn varint_upto(&mut self, max_tag: u8) -> Result<u64, CodecError> {
        match self.buf.get(self.pos) {
            Some(&b) if b < 251 => {
                self.pos += 1;
                Ok(u64::from(b))
            }
            _ => self.varint_wide(max_tag),
        }
    }

    #[inline(never)]
    fn varint_wide(&mut self, max_tag: u8) -> Result<u64, CodecError> {
        let tag = self.u8()?;
        if tag < 251 {
            return Ok(u64::from(tag));
        }
        if tag > max_tag {
            return Err(corrupt(format!("integer tag {tag} too wide")));
        }
        Ok(match tag {
            251 => u64::from(u16::from_le_bytes(self.array()?)),
            252 => u64::from(u32::from_le_bytes(self.array()?)),
            _ => u64::from_le_bytes(self.array()?),
        })
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    #[inline(always)]
    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(self.varint_upto(252)? as u32)
    }

    #[inline]
    fn i64(&mut self) -> Result<i64, CodecError> {
        let z = self.varint_upto(253)?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    /// A length prefix of elements at least `min_size` bytes each; larger
    /// than the rest of the record is corrupt (and never allocated).
    #[inline]
    fn len(&mut self, min_size: usize) -> Result<usize, CodecError> {
        let n = self.varint_upto(253)?;
        if n > (self.remaining() / min_size) as u64 {
            return Err(corrupt(format!("length {n} exceeds the record")));
        }
        Ok(n as usize)
    }

    #[inline(always)]
    fn tag(&mut self) -> Result<bool, CodecError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            t => Err(bad_tag(t)),
        }
    }

    #[inline]
    fn str(&mut self) -> Result<&'a str, CodecError> {
        let n = self.len(1)?;
        std::str::from_utf8(self.take(n)?).map_err(|_| corrupt("string is not UTF-8"))
    }

    #[inline(always)]
    fn sym(&mut self, dict_len: u32) -> Result<u32, CodecError> {
        let s = self.u32()?;
        if s > dict_len {
            return Err(undefined_symbol(s, dict_len));
        }
        Ok(s)
    }

    fn opt_u32(&mut self) -> Result<Option<u32>, CodecError> {
        Ok(if self.tag()? { Some(self.u32()?) } else { None })
    }

    fn opt_bool(&mut self) -> Result<Option<bool>, CodecError> {
        Ok(if self.tag()? { Some(self.tag()?) } else { None })
    }

    fn opt_i32(&mut self) -> Result<Option<i32>, CodecError> {
        if !self.tag()? {
            return Ok(None);
        }
        let z = self.varint_upto(252)?;
        let v = ((z >> 1) as i64) ^ -((z & 1) as i64);
        Ok(Some(v as i32))
    }

    fn endpoint(&mut self) -> Result<Option<Endpoint>, CodecError> {
        if !self.tag()? {
            return Ok(None);
        }
        let ip = if self.tag()? {
            Some(match self.u32()? {
                0 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
                1 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
                v => return Err(corrupt(format!("invalid IP address variant {v}"))),
            })
        } else {
            None
        };
        let port = if self.tag()? {
            Some(self.varint_upto(251)? as u16)
        } else {
            None
        };
        Ok(Some(Endpoint { ip, port }))
    }
}

/// One process of an interned event. Strings are symbols (0 = none); the
/// arguments are `args_len` symbols at `args_start` of [`EventSyms::args`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcSyms {
    pub pid: Option<u32>,
    pub entity_id: u32,
    pub name: u32,
    pub executable: u32,
    pub args_start: u32,
    pub args_len: u32,
    pub command_line: u32,
    pub working_directory: u32,
    pub signing_id: u32,
    pub team_id: u32,
    pub trusted: Option<bool>,
    pub platform_binary: Option<bool>,
    pub cdhash: u32,
    pub sha256: u32,
    pub exit_code: Option<i32>,
}

/// `file.*` as symbols.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileSyms {
    pub path: u32,
    pub name: u32,
    pub extension: u32,
    pub target_path: u32,
}

/// `network.*` as symbols.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetSyms {
    pub transport: u32,
    pub direction: u32,
}

/// An [`Event`] as a version-2 record holds it: every string a symbol into
/// the block dictionary. A [`BlockDecoder`] fills one in place per record
/// (its vectors are reused, so decoding allocates nothing once warm).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventSyms {
    pub timestamp_ns: i64,
    pub category: Category,
    /// Bit i set when `event.type` holds `EventType::ALL[i]`.
    pub types: u32,
    /// `event.type` exactly as the event had it (order and repeats kept).
    pub types_list: Vec<EventType>,
    pub action: u32,
    pub event_id: u32,
    pub outcome: u32,
    pub host_id: u32,
    pub host_name: u32,
    pub os_type: u32,
    pub os_family: u32,
    pub os_version: u32,
    pub process: ProcSyms,
    /// `process.parent`, its parent, and so on.
    pub parents: Vec<ProcSyms>,
    /// The argument symbols of `process` and its parents.
    pub args: Vec<u32>,
    pub user_id: u32,
    pub user_name: u32,
    pub file: Option<FileSyms>,
    pub source: Option<Endpoint>,
    pub destination: Option<Endpoint>,
    pub network: Option<NetSyms>,
}

impl EventSyms {
    /// The argument symbols of `p` (one of this event's processes).
    pub fn args_of(&self, p: &ProcSyms) -> &[u32] {
        let start = p.args_start as usize;
        self.args
            .get(start..start + p.args_len as usize)
            .unwrap_or(&[])
    }

    fn read(&mut self, c: &mut Cur<'_>, n: u32) -> Result<(), CodecError> {
        self.timestamp_ns = c.i64()?;
        self.category = *Category::ALL
            .get(c.u32()? as usize)
            .ok_or_else(|| corrupt("unknown event.category"))?;
        let mask = c.u32()?;
        if mask >> EventType::ALL.len() != 0 {
            return Err(corrupt("unknown event.type bit"));
        }
        self.types = mask;
        self.types_list.clear();
        let k = c.len(1)?;
        if k == 0 {
            let mut bits = mask;
            while bits != 0 {
                let i = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if let Some(&t) = EventType::ALL.get(i) {
                    self.types_list.push(t);
                }
            }
        } else {
            let mut seen = 0u32;
            for _ in 0..k {
                let t = *EventType::ALL
                    .get(c.u32()? as usize)
                    .ok_or_else(|| corrupt("unknown event.type"))?;
                seen |= 1 << t as u32;
                self.types_list.push(t);
            }
            if seen != mask {
                return Err(corrupt("event.type list disagrees with its mask"));
            }
        }
        self.action = c.sym(n)?;
        self.event_id = c.sym(n)?;
        self.outcome = c.sym(n)?;
        self.host_id = c.sym(n)?;
        self.host_name = c.sym(n)?;
        self.os_type = c.sym(n)?;
        self.os_family = c.sym(n)?;
        self.os_version = c.sym(n)?;
        self.args.clear();
        self.process = read_process(c, n, &mut self.args)?;
        // Each process takes at least 14 bytes.
        let parents = c.len(14)?;
        if parents >= MAX_PROCESS_DEPTH {
            return Err(corrupt(format!(
                "process.parent nests deeper than {MAX_PROCESS_DEPTH} levels"
            )));
        }
        self.parents.clear();
        for _ in 0..parents {
            let p = read_process(c, n, &mut self.args)?;
            self.parents.push(p);
        }
        self.user_id = c.sym(n)?;
        self.user_name = c.sym(n)?;
        self.file = if c.tag()? {
            Some(FileSyms {
                path: c.sym(n)?,
                name: c.sym(n)?,
                extension: c.sym(n)?,
                target_path: c.sym(n)?,
            })
        } else {
            None
        };
        self.source = c.endpoint()?;
        self.destination = c.endpoint()?;
        self.network = if c.tag()? {
            Some(NetSyms {
                transport: c.sym(n)?,
                direction: c.sym(n)?,
            })
        } else {
            None
        };
        Ok(())
    }
}

fn read_process(c: &mut Cur<'_>, n: u32, args: &mut Vec<u32>) -> Result<ProcSyms, CodecError> {
    let pid = c.opt_u32()?;
    let entity_id = c.sym(n)?;
    let name = c.sym(n)?;
    let executable = c.sym(n)?;
    let count = c.len(1)?;
    let args_start = args.len() as u32;
    for _ in 0..count {
        match c.sym(n)? {
            0 => return Err(corrupt("process.args holds a null")),
            a => args.push(a),
        }
    }
    Ok(ProcSyms {
        pid,
        entity_id,
        name,
        executable,
        args_start,
        args_len: count as u32,
        command_line: c.sym(n)?,
        working_directory: c.sym(n)?,
        signing_id: c.sym(n)?,
        team_id: c.sym(n)?,
        trusted: c.opt_bool()?,
        platform_binary: c.opt_bool()?,
        cdhash: c.sym(n)?,
        sha256: c.sym(n)?,
        exit_code: c.opt_i32()?,
    })
}

/// Decodes the records of one block in order. The dictionary borrows the
/// strings from the decompressed block (`'a`), so decoding copies no text;
/// every symbol is checked against it, so a view never refers to a string
/// that does not exist.
#[derive(Debug, Default)]
pub struct BlockDecoder<'a> {
    dict: Vec<&'a str>,
    syms: EventSyms,
}

impl<'a> BlockDecoder<'a> {
    pub fn new() -> BlockDecoder<'a> {
        BlockDecoder {
            dict: Vec::with_capacity(1024),
            syms: EventSyms::default(),
        }
    }

    /// Forgets the dictionary: the next record starts a block.
    pub fn reset(&mut self) {
        self.dict.clear();
    }

    /// Strings defined so far in this block.
    pub fn dict_len(&self) -> usize {
        self.dict.len()
    }

    /// Decodes the next record of the block: a version-2 record as a view of
    /// the interned event (no allocation), a version-1 record as an owned
    /// event. A record that fails leaves the dictionary as it was before it.
    pub fn decode_next(&mut self, bytes: &'a [u8]) -> Result<Decoded<'_>, CodecError> {
        let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
        match version {
            FORMAT_VERSION => self.decode_v2(body).map(Decoded::View),
            FORMAT_VERSION_V1 => decode_v1(body).map(|e| Decoded::Owned(Box::new(e))),
            v => Err(CodecError::UnsupportedVersion(v)),
        }
    }

    /// Decodes the next record, which must be version 2.
    pub fn decode_view(&mut self, bytes: &'a [u8]) -> Result<EventView<'_>, CodecError> {
        match bytes.split_first() {
            None => Err(CodecError::Empty),
            Some((&FORMAT_VERSION, body)) => self.decode_v2(body),
            Some((&v, _)) => Err(CodecError::UnsupportedVersion(v)),
        }
    }

    /// Takes in the strings the next record defines without decoding its
    /// event (for records a reader does not want, e.g. outside a time range).
    pub fn skip_next(&mut self, bytes: &'a [u8]) -> Result<(), CodecError> {
        let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
        match version {
            FORMAT_VERSION => {
                let before = self.dict.len();
                let r = self.read_strings(&mut Cur::new(body));
                if r.is_err() {
                    self.dict.truncate(before);
                }
                r
            }
            FORMAT_VERSION_V1 => Ok(()),
            v => Err(CodecError::UnsupportedVersion(v)),
        }
    }

    fn read_strings(&mut self, c: &mut Cur<'a>) -> Result<(), CodecError> {
        let n = c.len(1)?;
        if self.dict.len() + n >= u32::MAX as usize {
            return Err(corrupt("dictionary overflow"));
        }
        for _ in 0..n {
            let s = c.str()?;
            self.dict.push(s);
        }
        Ok(())
    }

    fn decode_v2(&mut self, body: &'a [u8]) -> Result<EventView<'_>, CodecError> {
        let before = self.dict.len();
        let mut c = Cur::new(body);
        let r = self.read_strings(&mut c).and_then(|()| {
            self.syms.read(&mut c, self.dict.len() as u32)?;
            match c.remaining() {
                0 => Ok(()),
                n => Err(CodecError::TrailingBytes(n)),
            }
        });
        match r {
            Ok(()) => Ok(EventView {
                syms: &self.syms,
                dict: &self.dict,
            }),
            Err(e) => {
                self.dict.truncate(before);
                Err(e)
            }
        }
    }
}

/// A decoded version-2 record: the interned event and the block dictionary
/// its symbols index. Queries evaluate on it directly
/// ([`crate::query::EventFields`]); [`to_event`](EventView::to_event) makes
/// the owned [`Event`] when one is needed.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'v> {
    syms: &'v EventSyms,
    dict: &'v [&'v str],
}

impl<'v> EventView<'v> {
    /// The interned event.
    pub fn syms(&self) -> &'v EventSyms {
        self.syms
    }

    /// The block dictionary so far (symbol `k` is entry `k - 1`).
    pub fn dict(&self) -> &'v [&'v str] {
        self.dict
    }

    /// The string of a symbol; `None` for 0 (and, defensively, for ids the
    /// decoder would have refused).
    #[inline]
    pub fn str(&self, sym: u32) -> Option<&'v str> {
        match sym {
            0 => None,
            k => self.dict.get(k as usize - 1).copied(),
        }
    }

    pub fn timestamp_ns(&self) -> i64 {
        self.syms.timestamp_ns
    }

    pub fn category(&self) -> Category {
        self.syms.category
    }

    fn string(&self, sym: u32) -> Option<Text> {
        self.str(sym).map(Text::from)
    }

    fn process(&self, p: &ProcSyms) -> Process {
        Process {
            pid: p.pid,
            entity_id: self.string(p.entity_id),
            name: self.string(p.name),
            executable: self.string(p.executable),
            args: self
                .syms
                .args_of(p)
                .iter()
                .map(|&a| Text::from(self.str(a).unwrap_or_default()))
                .collect(),
            command_line: self.string(p.command_line),
            working_directory: self.string(p.working_directory),
            code_signature: CodeSignature {
                signing_id: self.string(p.signing_id),
                team_id: self.string(p.team_id),
                trusted: p.trusted,
                platform_binary: p.platform_binary,
            },
            hash: Hash {
                cdhash: self.string(p.cdhash),
                sha256: self.string(p.sha256),
            },
            exit_code: p.exit_code,
            parent: None,
        }
    }

    /// The owned event: exactly the one that was encoded.
    pub fn to_event(&self) -> Event {
        let s = self.syms;
        let mut process = self.process(&s.process);
        let mut chain: Option<Process> = None;
        for p in s.parents.iter().rev() {
            let mut owned = self.process(p);
            owned.parent = chain.map(Arc::new);
            chain = Some(owned);
        }
        process.parent = chain.map(Arc::new);
        Event {
            timestamp_ns: s.timestamp_ns,
            event: EventInfo {
                category: s.category,
                types: s.types_list.clone(),
                action: self.string(s.action),
                id: self.string(s.event_id),
                outcome: self.string(s.outcome),
            },
            host: Host {
                id: self.string(s.host_id),
                name: self.string(s.host_name),
                os: Os {
                    os_type: self.string(s.os_type),
                    family: self.string(s.os_family),
                    version: self.string(s.os_version),
                },
            },
            process,
            user: User {
                id: self.string(s.user_id),
                name: self.string(s.user_name),
            },
            file: s.file.map(|f| File {
                path: self.string(f.path),
                name: self.string(f.name),
                extension: self.string(f.extension),
                target_path: self.string(f.target_path),
            }),
            source: s.source.clone(),
            destination: s.destination.clone(),
            network: s.network.map(|n| Network {
                transport: self.string(n.transport),
                direction: self.string(n.direction),
            }),
        }
    }
}

/// What [`BlockDecoder::decode_next`] gives: a view of a version-2 record,
/// or a version-1 record decoded whole.
#[derive(Debug)]
pub enum Decoded<'v> {
    View(EventView<'v>),
    Owned(Box<Event>),
}

impl Decoded<'_> {
    pub fn timestamp_ns(&self) -> i64 {
        match self {
            Decoded::View(v) => v.timestamp_ns(),
            Decoded::Owned(e) => e.timestamp_ns,
        }
    }

    /// The owned event (a copy for views).
    pub fn to_event(&self) -> Event {
        match self {
            Decoded::View(v) => v.to_event(),
            Decoded::Owned(e) => (**e).clone(),
        }
    }

    pub fn into_event(self) -> Event {
        match self {
            Decoded::View(v) => v.to_event(),
            Decoded::Owned(e) => *e,
        }
    }
}

#[cfg(test)]
mod tests {
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
}
