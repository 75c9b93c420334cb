//! Writing version-2 records: [`EventEncoder`] interns a block's strings.

use super::*;

// ---------------------------------------------------------------------------
// Writing.

#[inline]
pub(super) fn put_varint(out: &mut Vec<u8>, v: u64) {
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
pub(super) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
pub(super) fn put_opt_varint(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        None => out.push(0),
        Some(x) => {
            out.push(1);
            put_varint(out, x);
        }
    }
}

#[inline]
pub(super) fn put_opt_bool(out: &mut Vec<u8>, v: Option<bool>) {
    match v {
        None => out.push(0),
        Some(b) => out.extend_from_slice(&[1, u8::from(b)]),
    }
}

pub(super) fn put_endpoint(out: &mut Vec<u8>, e: &Option<Endpoint>) {
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
pub(super) fn type_mask(types: &[EventType]) -> (u32, bool) {
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

pub(super) const HASH_K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// A 64-bit hash of a whole string, for the dictionary's lookups (only
/// in memory: record bytes do not depend on it).
#[inline]
pub(super) fn full_hash(bytes: &[u8]) -> u64 {
    crate::fasthash::hash_bytes(0, bytes)
}

/// Hashes a `u64` key that already is a hash: the identity.
#[derive(Default, Clone, Copy)]
pub(super) struct IdentityHasher(u64);

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
pub(super) type ByHash = HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>;

/// Slots of the encoder's direct-mapped cache of recent strings.
pub(super) const CACHE_BITS: u32 = 14;

/// Slots of the encoder's cache of shared strings by address. Small enough
/// to stay in a core's cache between the spool thread's batches (64 KiB): at
/// a few thousand events a second, a bigger table is mostly cold misses.
pub(super) const PTR_BITS: u32 = 12;

/// A cheap hash of a string's length and a few of its bytes (first, middle,
/// last eight), for the direct-mapped cache. Collisions only cost a miss:
/// a hit is always confirmed by comparing the whole string.
#[inline(always)]
pub(super) fn quick_hash(s: &[u8]) -> usize {
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
pub(super) struct PtrEntry {
    key: u64,
    sym: u32,
    generation: u32,
}

/// A string's address and length (`Text::addr`, whose top length bit is
/// its kind) in one word: user-space addresses fit in 48 bits on every
/// target we build for. Strings that do not fit (long ones, or an address
/// beyond 48 bits) are looked up by content instead.
#[inline(always)]
pub(super) fn ptr_key((addr, len): (usize, usize)) -> Option<u64> {
    let shared = (len >> (usize::BITS - 1)) as u64;
    let len = (len << 1 >> 1) as u64;
    let addr = addr as u64;
    (addr < 1 << 48 && len < 1 << 15).then_some(addr | len << 48 | shared << 63)
}

/// Slots of the encoder's parent memo: a child's events come in runs, and
/// a busy host has a few dozen parents with children active at once.
pub(super) const PARENT_SLOTS: usize = 64;

/// One parent the encoder met, held, and the bytes `put_process` wrote for
/// it (valid in `generation` only).
#[derive(Default)]
pub(super) struct ParentEntry {
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
    pub(super) arena: Vec<u8>,
    /// Symbol index → (start, length) in `arena`.
    pub(super) spans: Vec<(u32, u32)>,
    /// Full hash → symbol index.
    pub(super) by_hash: ByHash,
    /// The rare strings whose full hash another string already has.
    pub(super) collided: HashMap<Box<str>, u32>,
    /// `quick_hash` → symbol (index + 1; 0 is empty): most strings of an
    /// event were seen recently, and one comparison confirms them without
    /// hashing the whole string.
    pub(super) cache: Box<[u32]>,
    /// Slot of a shared string's address (`Text::addr_hash`) → its key,
    /// symbol + 1 and generation: strings sources share between events are
    /// recognised by address, without reading their bytes (which another
    /// core wrote). An entry counts only in the generation that made it.
    pub(super) by_ptr: Box<[PtrEntry]>,
    /// Bumped whenever symbols are forgotten (reset, rollback): every
    /// older `by_ptr` entry then misses.
    pub(super) ptr_generation: u32,
    /// Symbol index → the shared string it was first seen as. Holding it
    /// keeps that address from being reused for other text while a
    /// `by_ptr` entry of this generation names it: an entry is made only
    /// for the address held for its symbol, and held strings change only
    /// with the generation. So a hit needs no look at the string.
    pub(super) held: Vec<Option<Text>>,
    /// Shared parents (`process.parent` is an `Arc` the agent's process
    /// table hands every event of a child) met in this generation, by
    /// address, with their encoding: the next event of a child copies those
    /// bytes instead of looking up each of the parent's strings again.
    pub(super) parents: Box<[ParentEntry]>,
    /// The strings the record being encoded adds, each as varint length + bytes.
    pub(super) new_strings: Vec<u8>,
    pub(super) new_count: u64,
    pub(super) body: Vec<u8>,
    /// Dictionary size before the last record (for `rollback_last`).
    pub(super) mark: u32,
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
    pub(super) fn forget_addresses(&mut self) {
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
    pub(super) fn bytes_of(&self, id: u32) -> Option<&[u8]> {
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
        let version = if event.extra.is_empty() {
            FORMAT_VERSION
        } else {
            self.put_extras(&event.extra, &mut body);
            FORMAT_VERSION_V3
        };
        out.reserve(1 + 9 + self.new_strings.len() + body.len());
        out.push(version);
        put_varint(out, self.new_count);
        out.extend_from_slice(&self.new_strings);
        out.extend_from_slice(&body);
        self.body = body;
        Ok(())
    }

    #[inline]
    pub(super) fn intern(&mut self, s: &str) -> u64 {
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
    pub(super) fn intern_slow(&mut self, s: &str) -> u32 {
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
    pub(super) fn intern_text(&mut self, t: &Text) -> u64 {
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
    pub(super) fn sym(&mut self, s: &Option<Text>, out: &mut Vec<u8>) {
        let v = match s {
            None => 0,
            Some(s) => self.intern_text(s),
        };
        put_varint(out, v);
    }

    pub(super) fn put_event(&mut self, e: &Event, b: &mut Vec<u8>) {
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

    /// The extras section of a version-3 record (in path order, as
    /// [`Extras`] keeps them).
    pub(super) fn put_extras(&mut self, extras: &Extras, b: &mut Vec<u8>) {
        put_varint(b, extras.len() as u64);
        for (key, value) in extras.iter() {
            let k = self.intern(key);
            put_varint(b, k);
            match value {
                ExtraValue::Str(s) => {
                    b.push(0);
                    let v = self.intern_text(s);
                    put_varint(b, v);
                }
                ExtraValue::Int(i) => {
                    b.push(1);
                    put_varint(b, zigzag(*i));
                }
                ExtraValue::Float(s) => {
                    b.push(2);
                    let v = self.intern_text(s);
                    put_varint(b, v);
                }
                ExtraValue::Bool(v) => {
                    b.push(3);
                    b.push(u8::from(*v));
                }
                ExtraValue::List(items) => {
                    b.push(4);
                    put_varint(b, items.len() as u64);
                    for s in items {
                        let v = self.intern_text(s);
                        put_varint(b, v);
                    }
                }
            }
        }
    }

    /// [`put_process`](Self::put_process) for a parent, from the parent
    /// memo when this generation already encoded this very `Arc`. The memo
    /// holds the `Arc`, so its address names no other process meanwhile, and
    /// a shared `Process` is never changed in place (`Arc::make_mut` copies
    /// it); the symbols its bytes name stay defined for the generation.
    pub(super) fn put_parent(&mut self, p: &Arc<Process>, b: &mut Vec<u8>) {
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

    pub(super) fn put_process(&mut self, p: &Process, b: &mut Vec<u8>) {
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
