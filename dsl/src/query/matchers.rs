//! Precompiled string and address tests: wildcards, case-insensitive sets,
//! CIDR ranges. Built once per rule; matching allocates nothing for ASCII.

use std::collections::HashSet;

use super::guard::AtomKind;
use std::net::IpAddr;

/// A string test compiled from one operator and its literals.
#[derive(Debug, Clone)]
pub enum StrTest {
    /// Exact, case-sensitive (`==`, `in`).
    Exact(Vec<String>),
    /// Exact, case-insensitive (`in~`, `:` without wildcards).
    ExactCi(CiSet),
    /// Any of several patterns (`:`, `like`, `like~`, the string functions).
    Patterns(PatternSet),
    Regex(regex::Regex),
}

impl StrTest {
    /// Whether the test may scan the text (worth remembering its answers),
    /// unlike a comparison with a few values.
    pub fn is_costly(&self) -> bool {
        match self {
            StrTest::Exact(_) | StrTest::ExactCi(_) => false,
            StrTest::Patterns(ps) => ps.is_costly(),
            StrTest::Regex(_) => true,
        }
    }

    /// Literals one of which any text this test matches must hold
    /// (ignoring case), for the correlator's index
    /// ([`super::guard::Guard`]); `None` when some text may match without
    /// any (a regex, a pattern of wildcards only or not ASCII).
    pub fn necessary_literals(&self) -> Option<Vec<(AtomKind, String)>> {
        match self {
            StrTest::Exact(values) => Some(
                values
                    .iter()
                    .map(|v| (AtomKind::Exact, v.to_lowercase()))
                    .collect(),
            ),
            StrTest::ExactCi(set) => Some(
                set.lowered()
                    .iter()
                    .map(|v| (AtomKind::Exact, v.clone()))
                    .collect(),
            ),
            StrTest::Patterns(ps) => ps.patterns.iter().map(Pattern::necessary_literal).collect(),
            StrTest::Regex(_) => None,
        }
    }

    pub fn matches(&self, v: &str) -> bool {
        match self {
            StrTest::Exact(values) => values.iter().any(|x| x == v),
            StrTest::ExactCi(set) => set.contains(v),
            StrTest::Patterns(ps) => ps.matches(v),
            StrTest::Regex(re) => re.is_match(v),
        }
    }
}

/// Case-insensitive membership: a short list is scanned, a long one hashed.
#[derive(Debug, Clone)]
pub struct CiSet {
    lowered: Vec<String>,
    hashed: Option<HashSet<String>>,
}

impl CiSet {
    pub fn new(values: impl IntoIterator<Item = String>) -> CiSet {
        let mut lowered: Vec<String> = values.into_iter().map(|v| v.to_lowercase()).collect();
        lowered.sort();
        lowered.dedup();
        let hashed = (lowered.len() > 16).then(|| lowered.iter().cloned().collect());
        CiSet { lowered, hashed }
    }

    /// The values, lower-case, sorted.
    pub fn lowered(&self) -> &[String] {
        &self.lowered
    }

    pub fn contains(&self, v: &str) -> bool {
        match &self.hashed {
            Some(set) => set.contains(v.to_lowercase().as_str()),
            None => self.lowered.iter().any(|x| eq_ci(x, v)),
        }
    }
}

/// `a` is already lower-case.
fn eq_ci(lower: &str, v: &str) -> bool {
    if lower.is_ascii() {
        lower.len() == v.len() && lower.as_bytes().eq_ignore_ascii_case(v.as_bytes())
    } else {
        lower == v.to_lowercase()
    }
}

/// A list of patterns, any of which may match. ASCII text (nearly all of
/// it) takes a fast path: patterns anchored at either end are checked one by
/// one, cheapest first (a length check and a compare reject most text), and
/// many substring patterns (`process.command_line : ("*curl *", "*wget *",
/// ...)`) become one regex, one linear scan instead of one per pattern.
/// Other text takes the general per-pattern path.
#[derive(Debug, Clone)]
pub struct PatternSet {
    patterns: Vec<Pattern>,
    /// Set when every pattern is ASCII and they share one case rule.
    ascii: Option<AsciiSet>,
    /// See [`PatternSet::is_costly`].
    costly: bool,
}

#[derive(Debug, Clone)]
struct AsciiSet {
    insensitive: bool,
    /// Bit `n` (63: 63 or more) is set when some piece may match text of
    /// length `n`, or when a piece has no first byte (`exact_len`,
    /// `first_byte`: rejects most text before any piece is looked at).
    lengths: u64,
    /// Bit `b` is set when some piece may match text starting with byte `b`.
    first_bytes: u128,
    pieces: Vec<Segments>,
    /// Substring patterns (when there are many) and `?` globs.
    complex: Option<regex::bytes::Regex>,
}

/// Substring patterns from this many on go into the regex.
const REGEX_FROM: usize = 3;

/// A `*`-only pattern split at its stars, `head*mid*...*tail` (lower-case
/// when case-insensitive), or an exact string.
#[derive(Debug, Clone)]
struct Segments {
    exact: bool,
    head: Box<[u8]>,
    mids: Vec<Box<[u8]>>,
    tail: Box<[u8]>,
}

impl Segments {
    fn from_shape(shape: &Shape) -> Option<Segments> {
        let seg = |exact, head: &str, mids: &[&[u8]], tail: &str| Segments {
            exact,
            head: head.as_bytes().into(),
            mids: mids
                .iter()
                .filter(|m| !m.is_empty())
                .map(|&m| m.into())
                .collect(),
            tail: tail.as_bytes().into(),
        };
        Some(match shape {
            Shape::Exact(p) => seg(true, p, &[], ""),
            Shape::Prefix(p) => seg(false, p, &[], ""),
            Shape::Suffix(p) => seg(false, "", &[], p),
            Shape::Contains(p) => seg(false, "", &[p.as_bytes()], ""),
            Shape::Glob(_, Some(bytes)) if !bytes.contains(&b'?') => {
                let parts: Vec<&[u8]> = bytes.split(|&b| b == b'*').collect();
                let (head, rest) = parts.split_first()?;
                let (tail, mids) = rest.split_last()?;
                Segments {
                    exact: false,
                    head: (*head).into(),
                    mids: mids
                        .iter()
                        .filter(|m| !m.is_empty())
                        .map(|&m| m.into())
                        .collect(),
                    tail: (*tail).into(),
                }
            }
            Shape::Glob(..) => return None,
        })
    }

    /// Only substrings to find: no anchored part to reject text cheaply.
    fn unanchored(&self) -> bool {
        !self.exact && self.head.is_empty() && self.tail.is_empty() && !self.mids.is_empty()
    }

    /// Whether `v` (lowered if the pattern is case-insensitive) matches.
    fn matches(&self, v: &[u8]) -> bool {
        if self.exact {
            return *v == *self.head;
        }
        let (h, t) = (self.head.len(), self.tail.len());
        if v.len() < h + t || v[..h] != *self.head || v[v.len() - t..] != *self.tail {
            return false;
        }
        // Leftmost occurrences in order: if any placement fits, this one does.
        let mut rest = &v[h..v.len() - t];
        for m in &self.mids {
            match find(rest, m) {
                Some(i) => rest = &rest[i + m.len()..],
                None => return false,
            }
        }
        true
    }

    fn regex(&self) -> String {
        let mids: Vec<String> = self
            .mids
            .iter()
            .map(|m| regex::escape(std::str::from_utf8(m).expect("ASCII")))
            .collect();
        format!("(?:{})", mids.join(".*"))
    }
}

/// The first occurrence of non-empty `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let last = hay.len().checked_sub(needle.len())?;
    let n = needle.len();
    let (first, end) = (needle[0], needle[n - 1]);
    // Scan for the first byte, then check the last before the rest: paths
    // have many `/`. Needles are short: compare inline, not with memcmp.
    let mut from = 0;
    while let Some(k) = hay[from..=last].iter().position(|&b| b == first) {
        let i = from + k;
        let w = &hay[i..i + n];
        if w[n - 1] == end && w.iter().zip(needle).all(|(a, b)| a == b) {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

impl PatternSet {
    /// The values text must equal (ignoring case, lower-cased) when every
    /// pattern is a whole-text literal without wildcards (`process.name :
    /// ("curl", "wget")`), for the dispatch index; else `None`.
    pub fn exact_values(&self) -> Option<Vec<String>> {
        self.patterns
            .iter()
            .map(|p| match &p.shape {
                Shape::Exact(s) => Some(s.to_lowercase()),
                _ => None,
            })
            .collect()
    }

    pub fn new(patterns: Vec<Pattern>) -> PatternSet {
        let ascii = AsciiSet::build(&patterns);
        // A regex, a `*` inside a pattern, many patterns or the general
        // path may scan the text; a few anchored patterns reject by length
        // and first byte, cheaper than remembering answers.
        let costly = ascii.as_ref().is_none_or(|set| {
            set.complex.is_some()
                || set.pieces.len() > 4
                || set.pieces.iter().any(|p| !p.mids.is_empty())
        });
        PatternSet {
            patterns,
            ascii,
            costly,
        }
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether matching may scan the text (worth remembering answers).
    fn is_costly(&self) -> bool {
        self.costly
    }

    pub fn matches(&self, v: &str) -> bool {
        match &self.ascii {
            Some(set) if v.is_ascii() => set.matches(v.as_bytes()),
            _ => self.patterns.iter().any(|p| p.matches(v)),
        }
    }
}

impl AsciiSet {
    fn build(patterns: &[Pattern]) -> Option<AsciiSet> {
        let insensitive = patterns.first().is_some_and(|p| p.insensitive);
        if patterns
            .iter()
            .any(|p| p.insensitive != insensitive || !p.pattern_is_ascii())
        {
            return None;
        }
        let mut pieces = Vec::new();
        let mut alternatives = Vec::new();
        for p in patterns {
            match (Segments::from_shape(&p.shape), &p.shape) {
                (Some(seg), _) => pieces.push(seg),
                (None, Shape::Glob(chars, _)) => alternatives.push(glob_regex(chars)),
                (None, _) => unreachable!("only globs with `?` have no segments"),
            }
        }
        if pieces.iter().filter(|s| s.unanchored()).count() >= REGEX_FROM {
            alternatives.extend(
                pieces
                    .iter()
                    .filter(|s| s.unanchored())
                    .map(Segments::regex),
            );
            pieces.retain(|s| !s.unanchored());
        }
        // Anchored (cheap to reject) before unanchored.
        pieces.sort_by_key(Segments::unanchored);
        let complex = if alternatives.is_empty() {
            None
        } else {
            // `s`: `.` matches any byte, as `*` and `?` do on ASCII text.
            // No `(?i)`: case-insensitive text is lowered before matching,
            // which keeps the regex's literal prefilters effective.
            let re = regex::bytes::RegexBuilder::new(&format!("(?s-u:{})", alternatives.join("|")))
                .size_limit(1 << 20)
                .build()
                .ok()?;
            Some(re)
        };
        let (mut lengths, mut first_bytes) = (0u64, 0u128);
        for p in &pieces {
            lengths |= match p.exact {
                true => 1 << p.head.len().min(63),
                // At least this long.
                false => u64::MAX << (p.head.len() + p.tail.len()).min(63),
            };
            first_bytes |= match p.head.first() {
                Some(&b) => 1 << b,
                None => u128::MAX,
            };
        }
        Some(AsciiSet {
            insensitive,
            lengths,
            first_bytes,
            pieces,
            complex,
        })
    }

    fn matches(&self, v: &[u8]) -> bool {
        if !self.insensitive {
            return self.matches_exact_case(v);
        }
        // Length and first byte reject most text before it is lowered.
        if self.complex.is_none()
            && !self.maybe_piece(v.len(), v.first().map(u8::to_ascii_lowercase))
        {
            return false;
        }
        // The patterns are lower-case: lower the text once, then compare
        // bytes exactly.
        let mut buf = [0u8; 256];
        let mut heap = Vec::new();
        let lowered = if v.len() <= buf.len() {
            &mut buf[..v.len()]
        } else {
            heap.resize(v.len(), 0);
            &mut heap[..]
        };
        lowered.copy_from_slice(v);
        lowered.make_ascii_lowercase();
        self.matches_exact_case(lowered)
    }

    /// Whether some piece may match text of length `len` starting with
    /// `first` (`None`: empty text).
    fn maybe_piece(&self, len: usize, first: Option<u8>) -> bool {
        self.lengths & (1 << len.min(63)) != 0
            && first.is_none_or(|b| self.first_bytes & (1 << b) != 0)
    }

    fn matches_exact_case(&self, v: &[u8]) -> bool {
        (self.maybe_piece(v.len(), v.first().copied()) && self.pieces.iter().any(|p| p.matches(v)))
            || self.complex.as_ref().is_some_and(|re| re.is_match(v))
    }
}

/// An ASCII glob as an unanchored regex alternative: leading and trailing
/// `*` drop the anchor on their side, `*` is `.*` and `?` is `.`.
fn glob_regex(chars: &[char]) -> String {
    let start = chars.iter().take_while(|&&c| c == '*').count();
    let end = chars.len()
        - chars[start..]
            .iter()
            .rev()
            .take_while(|&&c| c == '*')
            .count();
    let mut re = String::from("(?:");
    if start == 0 {
        re.push_str(r"\A");
    }
    let mut buf = [0u8; 4];
    for &c in &chars[start..end] {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(c.encode_utf8(&mut buf))),
        }
    }
    if end == chars.len() {
        re.push_str(r"\z");
    }
    re.push(')');
    re
}

/// One wildcard pattern (`*` any run, `?` one character), classified so the
/// common shapes (`abc`, `abc*`, `*abc`, `*abc*`) avoid the general matcher.
#[derive(Debug, Clone)]
pub struct Pattern {
    shape: Shape,
    insensitive: bool,
}

#[derive(Debug, Clone)]
enum Shape {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    /// The pattern as chars, and as bytes when it is ASCII (the fast path).
    Glob(Vec<char>, Option<Vec<u8>>),
}

impl Pattern {
    /// A wildcard pattern; with `insensitive`, case is ignored.
    pub fn wildcard(pat: &str, insensitive: bool) -> Pattern {
        let pat = if insensitive {
            pat.to_lowercase()
        } else {
            pat.to_string()
        };
        let inner = pat.trim_matches('*');
        let shape = if inner.contains(['*', '?']) || pat.contains('?') {
            Shape::Glob(
                pat.chars().collect(),
                pat.is_ascii().then(|| pat.as_bytes().to_vec()),
            )
        } else {
            match (pat.starts_with('*'), pat.ends_with('*')) {
                (false, false) => Shape::Exact(pat.clone()),
                (false, true) => Shape::Prefix(inner.to_string()),
                (true, false) => Shape::Suffix(inner.to_string()),
                (true, true) => Shape::Contains(inner.to_string()),
            }
        };
        Pattern { shape, insensitive }
    }

    /// The longest literal every match holds, and where (see
    /// [`StrTest::necessary_literals`]).
    fn necessary_literal(&self) -> Option<(AtomKind, String)> {
        let anchored =
            |kind, p: &str| (!p.is_empty() && p.is_ascii()).then(|| (kind, p.to_ascii_lowercase()));
        match &self.shape {
            Shape::Exact(p) => Some((AtomKind::Exact, p.to_lowercase())),
            Shape::Prefix(p) => anchored(AtomKind::Prefix, p),
            Shape::Suffix(p) => anchored(AtomKind::Suffix, p),
            Shape::Contains(p) => anchored(AtomKind::Contains, p),
            Shape::Glob(_, None) => None,
            Shape::Glob(_, Some(bytes)) => {
                let wild = |b: &u8| *b == b'*' || *b == b'?';
                let pieces: Vec<&[u8]> = bytes.split(wild).collect();
                let last = pieces.len() - 1;
                // The longest piece, but a folder most paths start with
                // (`/Users/*/.aws/*`) only if there is nothing else.
                let (i, piece) = pieces
                    .iter()
                    .enumerate()
                    .max_by_key(|(i, p)| (!is_common_root(p), p.len(), std::cmp::Reverse(*i)))?;
                let text = std::str::from_utf8(piece).ok()?;
                // The first piece starts the text, the last ends it (the
                // split leaves an empty piece before a leading wildcard).
                let kind = if i == 0 {
                    AtomKind::Prefix
                } else if i == last {
                    AtomKind::Suffix
                } else {
                    AtomKind::Contains
                };
                anchored(kind, text)
            }
        }
    }

    /// A literal prefix / suffix / substring test (the string functions).
    pub fn literal(kind: LiteralKind, text: &str, insensitive: bool) -> Pattern {
        let text = if insensitive {
            text.to_lowercase()
        } else {
            text.to_string()
        };
        let shape = match kind {
            LiteralKind::Prefix => Shape::Prefix(text),
            LiteralKind::Suffix => Shape::Suffix(text),
            LiteralKind::Contains => Shape::Contains(text),
        };
        Pattern { shape, insensitive }
    }

    pub fn matches(&self, v: &str) -> bool {
        if self.insensitive && !(self.pattern_is_ascii() && v.is_ascii()) {
            // Rare: non-ASCII text under a case-insensitive test.
            return self.matches_exact_case(&v.to_lowercase(), false);
        }
        self.matches_exact_case(v, self.insensitive)
    }

    fn pattern_is_ascii(&self) -> bool {
        match &self.shape {
            Shape::Exact(p) | Shape::Prefix(p) | Shape::Suffix(p) | Shape::Contains(p) => {
                p.is_ascii()
            }
            Shape::Glob(_, bytes) => bytes.is_some(),
        }
    }

    /// `ascii_ci`: compare ignoring ASCII case (pattern is lower-case).
    fn matches_exact_case(&self, v: &str, ascii_ci: bool) -> bool {
        let eq = |a: &[u8], b: &[u8]| {
            if ascii_ci {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        let vb = v.as_bytes();
        match &self.shape {
            Shape::Exact(p) => p.len() == vb.len() && eq(p.as_bytes(), vb),
            Shape::Prefix(p) => vb.len() >= p.len() && eq(&vb[..p.len()], p.as_bytes()),
            Shape::Suffix(p) => vb.len() >= p.len() && eq(&vb[vb.len() - p.len()..], p.as_bytes()),
            Shape::Contains(p) => p.is_empty() || vb.windows(p.len()).any(|w| eq(w, p.as_bytes())),
            Shape::Glob(chars, bytes) => glob_match(chars, bytes.as_deref(), v, ascii_ci),
        }
    }
}

/// Folders that begin most paths on a Mac: poor literals to index by.
fn is_common_root(piece: &[u8]) -> bool {
    const ROOTS: [&str; 10] = [
        "/users/",
        "/private/",
        "/private/var/",
        "/var/",
        "/tmp/",
        "/library/",
        "/applications/",
        "/system/",
        "/system/library/",
        "/volumes/",
    ];
    ROOTS
        .iter()
        .any(|r| piece.eq_ignore_ascii_case(r.as_bytes()))
}

#[derive(Debug, Clone, Copy)]
pub enum LiteralKind {
    Prefix,
    Suffix,
    Contains,
}

impl LiteralKind {
    /// The kind of test `startswith`, `endswith` and `stringcontains` make.
    pub fn of_function(name: &str) -> Option<LiteralKind> {
        match name {
            "startswith" => Some(LiteralKind::Prefix),
            "endswith" => Some(LiteralKind::Suffix),
            "stringcontains" => Some(LiteralKind::Contains),
            _ => None,
        }
    }

    /// Whether `text` holds `needle` this way.
    pub fn holds(self, text: &str, needle: &str) -> bool {
        match self {
            LiteralKind::Prefix => text.starts_with(needle),
            LiteralKind::Suffix => text.ends_with(needle),
            LiteralKind::Contains => text.contains(needle),
        }
    }
}

/// Classic iterative glob with single-star backtracking: linear in practice,
/// never exponential. ASCII text is matched byte by byte without allocating.
fn glob_match(pat: &[char], ascii_pat: Option<&[u8]>, text: &str, ascii_ci: bool) -> bool {
    if let (Some(pat), true) = (ascii_pat, text.is_ascii()) {
        return glob_slices(pat, text.as_bytes(), b'*', b'?', |p, t| {
            p == t || (ascii_ci && p.eq_ignore_ascii_case(&t))
        });
    }
    let text: Vec<char> = text.chars().collect();
    glob_slices(pat, &text, '*', '?', |p, t| {
        p == t || (ascii_ci && p.eq_ignore_ascii_case(&t))
    })
}

fn glob_slices<T: Copy + PartialEq>(
    pat: &[T],
    text: &[T],
    star_c: T,
    any_c: T,
    same: impl Fn(T, T) -> bool,
) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len() && (pat[p] == any_c || (pat[p] != star_c && same(pat[p], text[t]))) {
            p += 1;
            t += 1;
        } else if p < pat.len() && pat[p] == star_c {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&c| c == star_c)
}

/// An IPv4 or IPv6 network; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: u128,
    prefix: u8,
    v6: bool,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let ip: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("invalid CIDR {text:?}: {addr:?} is not an IP address"))?;
        let (bits, v6, max) = match ip {
            IpAddr::V4(v4) => (u32::from(v4) as u128, false, 32u8),
            IpAddr::V6(v6) => (u128::from(v6), true, 128u8),
        };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("invalid CIDR {text:?}: prefix must be 0..={max}"))?,
        };
        Ok(Cidr {
            net: bits & mask(prefix, max),
            prefix,
            v6,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) count as IPv4.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (ip, self.v6) {
            (IpAddr::V4(v4), false) => (u32::from(v4) as u128) & mask(self.prefix, 32) == self.net,
            (IpAddr::V6(v6), true) => u128::from(v6) & mask(self.prefix, 128) == self.net,
            _ => false,
        }
    }
}

fn mask(prefix: u8, max: u8) -> u128 {
    let full: u128 = if max == 32 {
        u32::MAX as u128
    } else {
        u128::MAX
    };
    match max - prefix {
        _ if prefix == 0 => 0,
        0 => full,
        host_bits => full & !((1u128 << host_bits) - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The literal the index keys a pattern by: every text the pattern
    /// matches holds it there.
    #[test]
    fn necessary_literals_of_patterns() {
        let lit = |p: &str| Pattern::wildcard(p, true).necessary_literal();
        let some = |k, s: &str| Some((k, s.to_string()));
        assert_eq!(lit("curl"), some(AtomKind::Exact, "curl"));
        assert_eq!(lit("Python*"), some(AtomKind::Prefix, "python"));
        assert_eq!(lit("*.plist"), some(AtomKind::Suffix, ".plist"));
        assert_eq!(lit("*osascript*"), some(AtomKind::Contains, "osascript"));
        // A glob: its longest piece, anchored only at the ends.
        assert_eq!(
            lit("/tmp/*/x?y/payload*"),
            some(AtomKind::Contains, "y/payload")
        );
        assert_eq!(
            lit("/Library/Launch*/*.plist"),
            some(AtomKind::Prefix, "/library/launch")
        );
        assert_eq!(
            lit("*/MacOS/Install?r"),
            some(AtomKind::Contains, "/macos/install")
        );
        assert_eq!(lit("a?bcdef"), some(AtomKind::Suffix, "bcdef"));
        // A folder most paths start with only when nothing else is there.
        assert_eq!(lit("/Users/*/.aws/*"), some(AtomKind::Contains, "/.aws/"));
        assert_eq!(lit("/Users/*"), some(AtomKind::Prefix, "/users/"));
        // Nothing to key by.
        assert_eq!(lit("*"), None);
        assert_eq!(lit("?*"), None);
        assert_eq!(lit("*é*"), None);
        for (p, text) in [
            ("/tmp/*/x?y/payload*", "/tmp/a/xzy/payload.sh"),
            ("a?bcdef", "aXbcdef"),
        ] {
            let (kind, l) = lit(p).unwrap();
            assert!(Pattern::wildcard(p, true).matches(text));
            let atom = crate::query::guard::Atom {
                field: crate::query::fields::lookup("process.name").unwrap(),
                kind,
                lit: l,
            };
            assert!(atom.admits(text), "{p} on {text}");
        }
    }

    #[test]
    fn wildcard_shapes_match_like_elasticsearch() {
        let p = Pattern::wildcard("python*", true);
        assert!(p.matches("Python3.11"));
        assert!(!p.matches("ipython"));
        assert!(Pattern::wildcard("*.sh", true).matches("/tmp/X.SH"));
        assert!(Pattern::wildcard("*curl*", true).matches("/usr/bin/curl -s"));
        assert!(
            Pattern::wildcard("/Users/*/Downloads/*", true).matches("/Users/bob/Downloads/a.pkg")
        );
        assert!(
            !Pattern::wildcard("/Users/*/Downloads/*", true).matches("/Users/bob/Documents/a.pkg")
        );
        assert!(Pattern::wildcard("tcl?h", false).matches("tclsh"));
        assert!(!Pattern::wildcard("Bash", false).matches("bash"));
        assert!(Pattern::wildcard("bash", true).matches("BASH"));
        assert!(Pattern::wildcard("*", true).matches(""));
        assert!(Pattern::wildcard("É*", true).matches("élan"));
    }

    #[test]
    fn pattern_set_agrees_with_its_patterns_one_by_one() {
        let pats = [
            "*curl *",
            "*python* -c*",
            "/Users/*/Downloads/*",
            "*/.*",
            "tcl?h",
            "?",
            "*?*",
            "a*b?c",
            "bash",
            "python3*",
            "*.SH",
            "*",
            "x.y",
            "*[a]+(b)*",
            "",
        ];
        let texts = [
            "",
            "a",
            "curl x",
            "/usr/bin/CURL -s",
            "python3 -c 'x'",
            "/Users/bob/Downloads/a.pkg",
            "/Users/bob/Documents/a.pkg",
            "/tmp/.hidden",
            "tclsh",
            "TCLXH",
            "aXXbYc",
            "ab c",
            "Bash",
            "run.sh",
            "xzy",
            "x.y",
            "q[a]+(b)q",
            "élan curl x",
        ];
        // Longer than the stack buffer for lowered text.
        let long = format!("/Users/Bob/Downloads/{}CURL x.SH", "a".repeat(300));
        let texts: Vec<&str> = texts.into_iter().chain([long.as_str()]).collect();
        for insensitive in [true, false] {
            let all: Vec<Pattern> = pats
                .iter()
                .map(|p| Pattern::wildcard(p, insensitive))
                .collect();
            for n in 1..=all.len() {
                for start in 0..all.len() + 1 - n {
                    let some = &all[start..start + n];
                    let set = PatternSet::new(some.to_vec());
                    for &t in &texts {
                        assert_eq!(
                            set.matches(t),
                            some.iter().any(|p| p.matches(t)),
                            "{:?} on {t:?} (insensitive: {insensitive})",
                            &pats[start..start + n]
                        );
                    }
                }
            }
        }
        for kind in [
            LiteralKind::Prefix,
            LiteralKind::Suffix,
            LiteralKind::Contains,
        ] {
            for insensitive in [true, false] {
                let ps: Vec<Pattern> = ["Sh", "a.b", ""]
                    .iter()
                    .map(|s| Pattern::literal(kind, s, insensitive))
                    .collect();
                for n in 1..=ps.len() {
                    let set = PatternSet::new(ps[..n].to_vec());
                    for t in ["bash", "BASH", "sha", "xa.bx", "axb", ""] {
                        assert_eq!(set.matches(t), ps[..n].iter().any(|p| p.matches(t)));
                    }
                }
            }
        }
    }

    #[test]
    fn cidr_covers_v4_v6_bare_and_mapped_addresses() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()));
        let lo6 = Cidr::parse("::1").unwrap();
        assert!(lo6.contains("::1".parse().unwrap()));
        assert!(!lo6.contains("::2".parse().unwrap()));
        let ll = Cidr::parse("FE80::/10").unwrap();
        assert!(ll.contains("fe80::1".parse().unwrap()));
        assert!(!ll.contains("2001:db8::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("1.2.3.4/33").is_err());
        assert!(Cidr::parse("banana/8").is_err());
        assert!(Cidr::parse("192.0.0.8/32")
            .unwrap()
            .contains("192.0.0.8".parse().unwrap()));
    }
}
