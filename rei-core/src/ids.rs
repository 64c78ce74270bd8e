//! Identifiers: newtypes so that a hold id can never be passed where a job id is expected, and the
//! [`IdGen`] port that makes them (deterministic in tests, time-ordered and random in production).

use std::fmt;

/// Makes unique 128-bit ids. Sync port: no I/O.
///
/// Contract: an implementation MUST NOT return the same value twice across every process that shares a store;
/// values SHOULD grow with time so that indexes stay append-mostly.
pub trait IdGen: Send + Sync {
    /// A fresh id.
    fn next_u128(&self) -> u128;
}

/// Makes a typed id from an [`IdGen`].
pub fn new_id<T: From<u128>>(ids: &dyn IdGen) -> T {
    T::from(ids.next_u128())
}

/// Why a text is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not 32 hexadecimal digits (dashes allowed, as in a UUID).
    #[error("id {0:?} is not 32 hexadecimal digits")]
    Syntax(String),
    /// Empty, too long, or with characters outside `A-Za-z0-9_-:.~`.
    #[error("key must be 1 to {max} characters of A-Za-z0-9 _ - : . ~")]
    Key {
        /// The longest accepted length.
        max: usize,
    },
}

macro_rules! u128_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(u128);

        impl $name {
            /// The raw value.
            #[must_use]
            pub const fn as_u128(self) -> u128 {
                self.0
            }

            /// Parses the UUID-like text [`Display`](fmt::Display) prints (dashes optional).
            ///
            /// # Errors
            /// [`IdError::Syntax`] for anything else.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                parse_u128(text).map(Self)
            }
        }

        #[cfg(feature = "serde")]
        crate::serde_text::via_text!($name, $name::parse);

        impl From<u128> for $name {
            fn from(v: u128) -> Self {
                Self(v)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt_u128(self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }
    };
}

u128_id!(
    /// One ledger transaction.
    TxId
);
u128_id!(
    /// One hold (a reservation of a user's money).
    HoldId
);
u128_id!(
    /// One generation job.
    JobId
);
u128_id!(
    /// One quote shown to a user.
    QuoteId
);
u128_id!(
    /// One metered usage session.
    SessionId
);
u128_id!(
    /// One audit record.
    AuditId
);

/// Prints a u128 as a lowercase UUID-shaped string (8-4-4-4-12 hex digits).
fn fmt_u128(v: u128, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let h = format!("{v:032x}");
    write!(f, "{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn parse_u128(text: &str) -> Result<u128, IdError> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || text.len() > 36 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(IdError::Syntax(text.chars().take(40).collect()));
    }
    u128::from_str_radix(&hex, 16).map_err(|_| IdError::Syntax(text.to_owned()))
}

/// The embedder's user id (a Telegram user id, a row id in the embedder's own database).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(transparent))]
pub struct UserId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
        pub struct $name(String);

        impl $name {
            /// The longest accepted length.
            pub const LEN_MAX: usize = $max;

            /// Parses 1 to `LEN_MAX` characters of `A-Za-z0-9 _ - : . ~`.
            ///
            /// # Errors
            /// [`IdError::Key`] for anything else.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                let ok = !text.is_empty()
                    && text.len() <= Self::LEN_MAX
                    && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.' | b'~'));
                if ok { Ok(Self(text.to_owned())) } else { Err(IdError::Key { max: Self::LEN_MAX }) }
            }

            /// The text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        #[cfg(feature = "serde")]
        crate::serde_text::via_text!($name, $name::parse);
    };
}

text_id!(
    /// The key that makes a money move idempotent: a replay with the same key returns the first outcome.
    /// Made by the caller from something stable (a payment id, a job id, an admin request id).
    IdempotencyKey,
    255
);
text_id!(
    /// A provider of generation (`kling`, `gemini`, an embedder's own).
    ProviderId,
    64
);
text_id!(
    /// A gateway's payment id (YooKassa's `id`), the key of a top-up.
    PaymentId,
    128
);
text_id!(
    /// A product sold (`image.nano-banana`, `video.kling-2.6.5s`).
    ProductId,
    128
);

impl IdempotencyKey {
    /// A key made of a prefix and an id, e.g. `capture:<hold>`. When the result would pass
    /// [`IdempotencyKey::LEN_MAX`], its tail is replaced by a 64-bit FNV-1a hash of the whole text, so the key
    /// stays deterministic and distinct.
    ///
    /// # Errors
    /// [`IdError::Key`] when `prefix` or `id` holds characters outside the key alphabet, or the prefix is
    /// empty.
    pub fn derived(prefix: &str, id: impl fmt::Display) -> Result<IdempotencyKey, IdError> {
        let mut text = format!("{prefix}:{id}");
        let alphabet = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.' | b'~');
        // Checked before any cut, so the cut below always falls between two ASCII characters.
        if prefix.is_empty() || !text.bytes().all(alphabet) {
            return Err(IdError::Key { max: Self::LEN_MAX });
        }
        if text.len() > Self::LEN_MAX {
            let hash =
                text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
            text.truncate(Self::LEN_MAX - 17);
            text.push_str(&format!("~{hash:016x}"));
        }
        IdempotencyKey::parse(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_parse_back() {
        // Proves the UUID-shaped text of an id parses back to the same id, and junk is refused.
        let id = HoldId::from(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let text = id.to_string();
        assert_eq!(text, "01234567-89ab-cdef-0011-223344556677");
        assert_eq!(HoldId::parse(&text), Ok(id));
        assert!(HoldId::parse("xyz").is_err());
        assert!(HoldId::parse(&"0".repeat(33)).is_err());
    }

    #[test]
    fn keys_refuse_empty_long_and_odd_characters() {
        // Proves keys are bounded and restricted to a safe alphabet.
        assert!(IdempotencyKey::parse("pay:2f1e-11").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse(&"a".repeat(256)).is_err());
        assert!(IdempotencyKey::parse("a b").is_err());
        assert!(IdempotencyKey::parse("ключ").is_err());
    }

    #[test]
    fn derived_keys_stay_valid_and_distinct_when_long() {
        // Proves a prefix on a maximal key neither panics nor collides: the tail becomes a hash.
        let long_a = "a".repeat(IdempotencyKey::LEN_MAX);
        let long_b = format!("{}b", "a".repeat(IdempotencyKey::LEN_MAX - 1));
        let ka = IdempotencyKey::derived("adjust", &long_a).expect("a long key is hashed, not refused");
        let kb = IdempotencyKey::derived("adjust", &long_b).expect("valid");
        assert_eq!(ka.as_str().len(), IdempotencyKey::LEN_MAX);
        assert_ne!(ka, kb);
        assert_eq!(Ok(ka), IdempotencyKey::derived("adjust", &long_a), "deterministic");
        assert_eq!(IdempotencyKey::derived("c", 7).map(|k| k.as_str().to_owned()), Ok("c:7".to_owned()));
    }

    #[test]
    fn derived_keys_refuse_what_is_not_key_syntax_without_panicking() {
        // Proves a prefix or id outside the key alphabet, of any length and script, is an error, never a panic.
        assert!(IdempotencyKey::derived("", 7).is_err());
        assert!(IdempotencyKey::derived("a b", 7).is_err());
        assert!(IdempotencyKey::derived("pay", "ключ").is_err());
        assert!(IdempotencyKey::derived("pay", "я".repeat(400)).is_err(), "a long non-ASCII id");
        assert!(IdempotencyKey::derived("pay", "a\n").is_err());
    }

    proptest::proptest! {
        #[test]
        fn derived_never_panics(prefix in ".{0,40}", id in ".{0,600}") {
            // Proves derived answers every input with a key of at most LEN_MAX characters or an error.
            if let Ok(k) = IdempotencyKey::derived(&prefix, &id) {
                proptest::prop_assert!(k.as_str().len() <= IdempotencyKey::LEN_MAX);
            }
        }
    }
}
