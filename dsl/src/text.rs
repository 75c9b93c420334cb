//! [`Text`]: the string type of every event field.
//!
//! Most of an event's strings recur: the host's name, the user, a
//! program's path and arguments. Sources hand out references to one copy
//! instead of allocating per event. A `Text` is either a `&'static str`
//! (strings a source knows for its whole life: literals, a leaked table
//! made once) or a reference-counted `Arc<str>`. Cloning the first kind
//! costs nothing; cloning the second one atomic add. That matters because
//! events are made on one core and read and freed on others: a count that
//! several cores keep changing is a cache line they keep taking from each
//! other.
//!
//! Both kinds fit in two words (the same as `&str`), so `Option<Text>` is
//! as small as `Option<Arc<str>>`.

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::Arc;

/// An immutable, cheaply cloned string: static or shared.
pub struct Text {
    ptr: NonNull<u8>,
    /// The length in bytes, with [`SHARED`] set when `ptr` is the data of
    /// an `Arc<str>` this value holds one count of.
    len: usize,
}

/// The top bit of `len`: no string is that long.
const SHARED: usize = 1 << (usize::BITS - 1);

// SAFETY: a `Text` is either a `&'static str` or an `Arc<str>`, both Send
// and Sync; it hands out only shared references to immutable bytes.
unsafe impl Send for Text {}
unsafe impl Sync for Text {}

impl Text {
    /// A string that lives as long as the program: cloning and dropping
    /// it touch no counter.
    pub const fn from_static(s: &'static str) -> Text {
        Text {
            // SAFETY: a reference is never null.
            ptr: unsafe { NonNull::new_unchecked(s.as_ptr() as *mut u8) },
            len: s.len(),
        }
    }

    /// Makes `s` static by leaking it: only for the few strings a source
    /// keeps for its whole life (made once, not per event).
    pub fn leak(s: String) -> Text {
        Text::from_static(Box::leak(s.into_boxed_str()))
    }

    #[inline]
    pub fn as_str(&self) -> &str {
        // SAFETY: `ptr`/`len` come from a `&'static str` or from an
        // `Arc<str>` whose count this value holds, so the bytes are valid
        // UTF-8 and outlive `self`.
        unsafe {
            std::str::from_utf8_unchecked(std::slice::from_raw_parts(
                self.ptr.as_ptr(),
                self.len & !SHARED,
            ))
        }
    }

    /// Whether this is the static kind.
    #[inline]
    pub fn is_static(&self) -> bool {
        self.len & SHARED == 0
    }

    /// Identity: two `Text`s with the same address and length are the same
    /// bytes for as long as either is alive (the static kind forever).
    #[inline]
    pub fn addr(&self) -> (usize, usize) {
        (self.ptr.as_ptr() as usize, self.len)
    }

    /// A hash of this string's address for caches keyed by it
    /// ([`crate::fasthash::addr_hash`]).
    #[inline]
    pub fn addr_hash(&self) -> u64 {
        crate::fasthash::addr_hash(self.ptr.as_ptr() as usize)
    }

    #[inline]
    fn raw_arc(&self) -> *const str {
        std::ptr::slice_from_raw_parts(self.ptr.as_ptr() as *const u8, self.len & !SHARED)
            as *const str
    }
}

impl From<Arc<str>> for Text {
    fn from(a: Arc<str>) -> Text {
        let len = a.len();
        let raw = Arc::into_raw(a) as *const u8 as *mut u8;
        Text {
            // SAFETY: `Arc::into_raw` never returns null.
            ptr: unsafe { NonNull::new_unchecked(raw) },
            len: len | SHARED,
        }
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text::from(Arc::<str>::from(s))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text::from(Arc::<str>::from(s))
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Text {
        Text::from(s.as_str())
    }
}

impl From<Box<str>> for Text {
    fn from(s: Box<str>) -> Text {
        Text::from(Arc::<str>::from(s))
    }
}

impl From<Cow<'_, str>> for Text {
    fn from(s: Cow<'_, str>) -> Text {
        Text::from(&*s)
    }
}

impl Clone for Text {
    #[inline]
    fn clone(&self) -> Text {
        if !self.is_static() {
            // SAFETY: this value holds a count of that `Arc<str>`.
            unsafe { Arc::increment_strong_count(self.raw_arc()) };
        }
        Text {
            ptr: self.ptr,
            len: self.len,
        }
    }
}

impl Drop for Text {
    #[inline]
    fn drop(&mut self) {
        if !self.is_static() {
            // SAFETY: gives back the count this value holds.
            unsafe { Arc::decrement_strong_count(self.raw_arc()) };
        }
    }
}

impl Default for Text {
    fn default() -> Text {
        Text::from_static("")
    }
}

impl Deref for Text {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Text {
    #[inline]
    fn eq(&self, other: &Text) -> bool {
        self.addr() == other.addr() || self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Text) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Text) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Text {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl serde::Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        Cow::<'de, str>::deserialize(d).map(Text::from)
    }
}

impl bincode::Encode for Text {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.as_str().encode(encoder)
    }
}

impl<Context> bincode::Decode<Context> for Text {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<Text, bincode::error::DecodeError> {
        String::decode(decoder).map(Text::from)
    }
}

bincode::impl_borrow_decode!(Text);

/// One shared [`Text`] per distinct string, for sources whose strings
/// repeat (a Mac's executables, names, signing ids, users): each is
/// allocated once, and every later event holds a count on the same copy,
/// which the spool's encoder also recognises by address. Bounded, in two
/// generations: when the newer one holds half of `capacity` strings, the
/// older one is forgotten and the newer one takes its place, so strings in
/// use (looked up again meanwhile) survive and one-off ones (a short-lived
/// process's entity id) leave. Events keep theirs through their own counts.
#[derive(Debug)]
pub struct TextCache {
    newer: std::collections::HashSet<Text, ahash::RandomState>,
    older: std::collections::HashSet<Text, ahash::RandomState>,
    capacity: usize,
}

impl TextCache {
    pub fn new(capacity: usize) -> TextCache {
        TextCache {
            newer: Default::default(),
            older: Default::default(),
            capacity: capacity.max(2),
        }
    }

    /// The shared copy of `s`, made on first sight.
    pub fn get(&mut self, s: &str) -> Text {
        if let Some(t) = self.newer.get(s) {
            return t.clone();
        }
        let t = match self.older.get(s) {
            Some(t) => t.clone(),
            None => Text::from(s),
        };
        if self.newer.len() >= self.capacity / 2 {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(t.clone());
        t
    }

    /// Strings held, both generations (a string may be in both).
    pub fn len(&self) -> usize {
        self.newer.len() + self.older.len()
    }

    pub fn is_empty(&self) -> bool {
        self.newer.is_empty() && self.older.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_hands_out_one_copy_per_string_and_stays_bounded() {
        let mut cache = TextCache::new(4);
        let a = cache.get("/bin/zsh");
        let b = cache.get(&String::from("/bin/zsh"));
        assert_eq!(a.addr(), b.addr(), "the same copy");
        assert_eq!(cache.len(), 1);
        cache.get("/usr/bin/git");
        // The newer generation is full: it becomes the older one.
        cache.get("/bin/ls");
        assert_eq!(cache.len(), 3);
        // A string in use is found in the older generation and kept...
        assert_eq!(cache.get("/bin/zsh").addr(), a.addr());
        // ...while one not looked up again leaves with it.
        cache.get("/bin/cat");
        cache.get("/bin/echo");
        assert!(cache.len() <= 4);
        assert_eq!(cache.get("/bin/zsh").addr(), a.addr(), "in use, kept");
        let git = cache.get("/usr/bin/git");
        assert_eq!(&*git, "/usr/bin/git");
        assert_eq!(&*a, "/bin/zsh", "copies outlive the cache's forgetting");
    }

    #[test]
    fn shared_text_frees_its_string_with_the_last_clone() {
        let arc: Arc<str> = Arc::from("shared");
        let weak = Arc::downgrade(&arc);
        let t = Text::from(arc);
        let copies: Vec<Text> = (0..5).map(|_| t.clone()).collect();
        assert!(!t.is_static());
        assert_eq!(weak.strong_count(), 6);
        drop(t);
        assert_eq!(&*copies[4], "shared");
        drop(copies);
        assert!(weak.upgrade().is_none(), "the last clone frees the string");
    }

    #[test]
    fn static_and_shared_text_compare_hash_and_print_as_their_string() {
        let a = Text::from_static("/bin/sh");
        let b = Text::from(String::from("/bin/sh"));
        assert!(a.is_static() && !b.is_static());
        assert_eq!(a, b);
        assert_eq!(a, "/bin/sh");
        let hash = |t: &Text| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            t.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&a), hash(&b));
        assert_eq!(format!("{a}|{b:?}"), "/bin/sh|\"/bin/sh\"");
        assert_eq!(Text::default(), "");
        assert_eq!(Text::from("").len(), 0);
        // Same address, different length: a prefix is not the same text.
        let whole = Text::from_static("abc");
        let prefix = Text::from_static(&"abc"[..2]);
        assert_ne!(whole.addr(), prefix.addr());
        assert_ne!(whole, prefix);
    }

    #[test]
    fn text_round_trips_through_serde_and_bincode() {
        let t = Text::from("naïve \"quoted\"");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Text>(&json).unwrap(), t);
        let cfg = bincode::config::standard();
        let bytes = bincode::encode_to_vec(&t, cfg).unwrap();
        let (back, _): (Text, usize) = bincode::decode_from_slice(&bytes, cfg).unwrap();
        assert_eq!(back, t);
        assert_eq!(
            bytes,
            bincode::encode_to_vec("naïve \"quoted\"", cfg).unwrap()
        );
    }
}
