//! Reading version-2 records: a bounds-checked cursor and [`BlockDecoder`].

use super::*;

// ---------------------------------------------------------------------------
// Reading.

/// A bounds-checked cursor over one record body.
pub(super) struct Cur<'a> {
    buf: &'a [u8],
    pos: usize,
}

#[cold]
pub(super) fn truncated() -> CodecError {
    corrupt("record ends early")
}

#[cold]
pub(super) fn undefined_symbol(s: u32, dict_len: u32) -> CodecError {
    corrupt(format!(
        "symbol {s} is not defined (the block's dictionary has {dict_len} strings so far)"
    ))
}

#[cold]
pub(super) fn bad_tag(t: u8) -> CodecError {
    corrupt(format!("invalid option/bool tag {t}"))
}

impl<'a> Cur<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Cur<'a> {
        Cur { buf, pos: 0 }
    }

    pub(super) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline(always)]
    pub(super) fn u8(&mut self) -> Result<u8, CodecError> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(truncated()),
        }
    }

    #[inline]
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.remaining() < n {
            return Err(truncated());
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// A varint no wider than `max_tag` allows (251: u16, 252: u32, 253: u64).
    #[inline(always)]
    pub(super) fn varint_upto(&mut self, max_tag: u8) -> Result<u64, CodecError> {
        match self.buf.get(self.pos) {
            Some(&b) if b < 251 => {
                self.pos += 1;
                Ok(u64::from(b))
            }
            _ => self.varint_wide(max_tag),
        }
    }

    #[inline(never)]
    pub(super) fn varint_wide(&mut self, max_tag: u8) -> Result<u64, CodecError> {
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
    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    #[inline(always)]
    pub(super) fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(self.varint_upto(252)? as u32)
    }

    #[inline]
    pub(super) fn i64(&mut self) -> Result<i64, CodecError> {
        let z = self.varint_upto(253)?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    /// A length prefix of elements at least `min_size` bytes each; larger
    /// than the rest of the record is corrupt (and never allocated).
    #[inline]
    pub(super) fn len(&mut self, min_size: usize) -> Result<usize, CodecError> {
        let n = self.varint_upto(253)?;
        if n > (self.remaining() / min_size) as u64 {
            return Err(corrupt(format!("length {n} exceeds the record")));
        }
        Ok(n as usize)
    }

    #[inline(always)]
    pub(super) fn tag(&mut self) -> Result<bool, CodecError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            t => Err(bad_tag(t)),
        }
    }

    #[inline]
    pub(super) fn str(&mut self) -> Result<&'a str, CodecError> {
        let n = self.len(1)?;
        std::str::from_utf8(self.take(n)?).map_err(|_| corrupt("string is not UTF-8"))
    }

    #[inline(always)]
    pub(super) fn sym(&mut self, dict_len: u32) -> Result<u32, CodecError> {
        let s = self.u32()?;
        if s > dict_len {
            return Err(undefined_symbol(s, dict_len));
        }
        Ok(s)
    }

    pub(super) fn opt_u32(&mut self) -> Result<Option<u32>, CodecError> {
        Ok(if self.tag()? { Some(self.u32()?) } else { None })
    }

    pub(super) fn opt_bool(&mut self) -> Result<Option<bool>, CodecError> {
        Ok(if self.tag()? { Some(self.tag()?) } else { None })
    }

    pub(super) fn opt_i32(&mut self) -> Result<Option<i32>, CodecError> {
        if !self.tag()? {
            return Ok(None);
        }
        let z = self.varint_upto(252)?;
        let v = ((z >> 1) as i64) ^ -((z & 1) as i64);
        Ok(Some(v as i32))
    }

    pub(super) fn endpoint(&mut self) -> Result<Option<Endpoint>, CodecError> {
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

pub(super) fn read_process(
    c: &mut Cur<'_>,
    n: u32,
    args: &mut Vec<u32>,
) -> Result<ProcSyms, CodecError> {
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
            FORMAT_VERSION => self.decode_v2(body, false).map(Decoded::View),
            FORMAT_VERSION_V3 => self.decode_v2(body, true).map(Decoded::View),
            FORMAT_VERSION_V1 => decode_v1(body).map(|e| Decoded::Owned(Box::new(e))),
            v => Err(CodecError::UnsupportedVersion(v)),
        }
    }

    /// Decodes the next record, which must be version 2.
    pub fn decode_view(&mut self, bytes: &'a [u8]) -> Result<EventView<'_>, CodecError> {
        match bytes.split_first() {
            None => Err(CodecError::Empty),
            Some((&FORMAT_VERSION, body)) => self.decode_v2(body, false),
            Some((&FORMAT_VERSION_V3, body)) => self.decode_v2(body, true),
            Some((&v, _)) => Err(CodecError::UnsupportedVersion(v)),
        }
    }

    /// Takes in the strings the next record defines without decoding its
    /// event (for records a reader does not want, e.g. outside a time range).
    pub fn skip_next(&mut self, bytes: &'a [u8]) -> Result<(), CodecError> {
        let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
        match version {
            FORMAT_VERSION | FORMAT_VERSION_V3 => {
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

    pub(super) fn read_strings(&mut self, c: &mut Cur<'a>) -> Result<(), CodecError> {
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

    /// A version-2 record's body, or a version-3 one's (`extras`).
    pub(super) fn decode_v2(
        &mut self,
        body: &'a [u8],
        extras: bool,
    ) -> Result<EventView<'_>, CodecError> {
        let before = self.dict.len();
        let mut c = Cur::new(body);
        let r = self.read_strings(&mut c).and_then(|()| {
            self.syms.read(&mut c, self.dict.len() as u32)?;
            if extras {
                self.syms.read_extras(&mut c, &self.dict)?;
            } else {
                self.syms.extras.clear();
                self.syms.extra_items.clear();
            }
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
