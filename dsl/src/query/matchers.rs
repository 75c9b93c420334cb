//! Precompiled string and address tests: wildcards, case-insensitive sets,
//! CIDR ranges. Built once per rule; matching allocates nothing for ASCII.

use std::collections::HashSet;
use std::net::IpAddr;

/// A string test compiled from one operator and its literals.
#[derive(Debug, Clone)]
pub enum StrTest {
    /// Exact, case-sensitive (`==`, `in`).
    Exact(Vec<String>),
    /// Exact, case-insensitive (`in~`, `:` without wildcards).
    ExactCi(CiSet),
    /// Any of several patterns (`:`, `like`, `like~`, the string functions).
    Patterns(Vec<Pattern>),
    Regex(regex::Regex),
}

impl StrTest {
    pub fn matches(&self, v: &str) -> bool {
        match self {
            StrTest::Exact(values) => values.iter().any(|x| x == v),
            StrTest::ExactCi(set) => set.contains(v),
            StrTest::Patterns(ps) => ps.iter().any(|p| p.matches(v)),
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

#[derive(Debug, Clone, Copy)]
pub enum LiteralKind {
    Prefix,
    Suffix,
    Contains,
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
