//! The interned form of a decoded event ([`EventSyms`]) and [`EventView`],
//! which queries read without making an owned [`Event`].

use super::*;

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
    /// Fields outside the schema (record version 3), sorted by key text.
    pub extras: Vec<ExtraSyms>,
    /// The element symbols of list-valued extras.
    pub extra_items: Vec<u32>,
}

/// One field outside the schema: its path and value as symbols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtraSyms {
    pub key: u32,
    pub value: ExtraSymValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraSymValue {
    Str(u32),
    Int(i64),
    Float(u32),
    Bool(bool),
    /// `len` symbols at `start` of [`EventSyms::extra_items`].
    List {
        start: u32,
        len: u32,
    },
}

impl EventSyms {
    /// The argument symbols of `p` (one of this event's processes).
    pub fn args_of(&self, p: &ProcSyms) -> &[u32] {
        let start = p.args_start as usize;
        self.args
            .get(start..start + p.args_len as usize)
            .unwrap_or(&[])
    }

    pub(super) fn read(&mut self, c: &mut Cur<'_>, n: u32) -> Result<(), CodecError> {
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

    /// The extras section of a version-3 record: keys must be distinct and
    /// in order (by text), so lookups can search them.
    pub(super) fn read_extras(&mut self, c: &mut Cur<'_>, dict: &[&str]) -> Result<(), CodecError> {
        let n = dict.len() as u32;
        self.extras.clear();
        self.extra_items.clear();
        // Each takes at least 3 bytes.
        let count = c.len(3)?;
        if count > crate::extra::MAX_EXTRAS {
            return Err(corrupt("too many extra fields"));
        }
        let mut last: Option<&str> = None;
        for _ in 0..count {
            let key = c.sym(n)?;
            let text = dict.get((key as usize).wrapping_sub(1)).copied();
            match (last, text) {
                (_, None) => return Err(corrupt("extra field without a name")),
                (Some(prev), Some(t)) if prev >= t => {
                    return Err(corrupt("extra fields out of order"))
                }
                _ => last = text,
            }
            let value = match c.u8()? {
                0 => ExtraSymValue::Str(nonzero(c.sym(n)?)?),
                1 => ExtraSymValue::Int(c.i64()?),
                2 => ExtraSymValue::Float(nonzero(c.sym(n)?)?),
                3 => ExtraSymValue::Bool(c.tag()?),
                4 => {
                    let k = c.len(1)?;
                    let start = self.extra_items.len() as u32;
                    for _ in 0..k {
                        let s = nonzero(c.sym(n)?)?;
                        self.extra_items.push(s);
                    }
                    ExtraSymValue::List {
                        start,
                        len: k as u32,
                    }
                }
                t => return Err(bad_tag(t)),
            };
            self.extras.push(ExtraSyms { key, value });
        }
        Ok(())
    }

    /// The element symbols of a list-valued extra.
    pub fn extra_list(&self, start: u32, len: u32) -> &[u32] {
        self.extra_items
            .get(start as usize..(start + len) as usize)
            .unwrap_or(&[])
    }
}

fn nonzero(sym: u32) -> Result<u32, CodecError> {
    if sym == 0 {
        Err(corrupt("missing string in an extra field"))
    } else {
        Ok(sym)
    }
}

/// its symbols index. Queries evaluate on it directly
/// ([`crate::query::EventFields`]); [`to_event`](EventView::to_event) makes
/// the owned [`Event`] when one is needed.
/// A decoded version-2 record: the interned event and the block dictionary
#[derive(Debug, Clone, Copy)]
pub struct EventView<'v> {
    pub(super) syms: &'v EventSyms,
    pub(super) dict: &'v [&'v str],
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

    pub(super) fn string(&self, sym: u32) -> Option<Text> {
        self.str(sym).map(Text::from)
    }

    pub(super) fn process(&self, p: &ProcSyms) -> Process {
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
            extra: self.extras(),
        }
    }

    /// The value of the extra field `path`, if the event has it.
    pub fn extra(&self, path: &str) -> Option<ExtraSymValue> {
        let extras = &self.syms.extras;
        extras
            .binary_search_by(|x| self.str(x.key).unwrap_or("").cmp(path))
            .ok()
            .map(|i| extras[i].value)
    }

    fn extras(&self) -> Extras {
        Extras::from_pairs(self.syms.extras.iter().map(|x| {
            let text = |s: u32| Text::from(self.str(s).unwrap_or_default());
            let value = match x.value {
                ExtraSymValue::Str(s) => ExtraValue::Str(text(s)),
                ExtraSymValue::Int(i) => ExtraValue::Int(i),
                ExtraSymValue::Float(s) => ExtraValue::Float(text(s)),
                ExtraSymValue::Bool(b) => ExtraValue::Bool(b),
                ExtraSymValue::List { start, len } => ExtraValue::List(
                    self.syms
                        .extra_list(start, len)
                        .iter()
                        .map(|&s| text(s))
                        .collect(),
                ),
            };
            (text(x.key), value)
        }))
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
