//! Secrets as a type: client secrets, tokens, codes and keys that cannot print themselves.
//!
//! A [`Secret`] wraps `secrecy`'s `SecretString` (wiped from memory when dropped, `Debug` prints
//! `[REDACTED]`) and adds what the portal needs of a credential it persists and compares: equality in constant
//! time, `serde` for the stores' rows, and `FromStr` for flags. It has no `Display`: the only way to the text is
//! [`Secret::expose_secret`], written where the value must leave the process (a request to Zoho, a row in a
//! store, a form field), so every such place can be found by searching for that name.

use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// A secret text value; `Debug` never shows it and nothing `Display`s it.
#[derive(Clone, Default)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }

    /// The value itself, for the places it must go (a request, a row, a form).
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }

    /// 256 fresh random bits (see [`random_token`]) as a secret: an OAuth `state`, a CSRF token.
    pub fn random() -> Self {
        Secret::new(random_token())
    }

    /// Whether the value is the empty string.
    pub fn is_empty(&self) -> bool {
        self.expose_secret().is_empty()
    }
}

/// A command-line value parser whose errors never repeat the value: clap's own error for a bad value does,
/// and the value may be a key or hold a password. Its error says what is wrong in `T::Err`'s words, which name
/// no secret (key ids, a masked password), and which flag or variable it came from.
pub struct QuietValueParser<T> {
    /// What the value is, for an error without a flag to name ("the store", "the keyring").
    what: &'static str,
    parsed: std::marker::PhantomData<fn() -> T>,
}

impl<T> QuietValueParser<T> {
    /// A parser of `T` values; `what` names one in an error that has no flag to name.
    pub const fn new(what: &'static str) -> QuietValueParser<T> {
        QuietValueParser {
            what,
            parsed: std::marker::PhantomData,
        }
    }
}

impl<T> Clone for QuietValueParser<T> {
    fn clone(&self) -> Self {
        QuietValueParser::new(self.what)
    }
}

impl<T> clap::builder::TypedValueParser for QuietValueParser<T>
where
    T: FromStr + Clone + Send + Sync + 'static,
    T::Err: fmt::Display,
{
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let name = arg.map_or_else(|| self.what.to_owned(), |arg| arg.to_string());
        let invalid = |message: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for {name}: {message}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| invalid(format!("{} is not UTF-8", self.what)))?;
        text.parse()
            .map_err(|error: T::Err| invalid(error.to_string()))
    }
}

/// 256 random bits from a generator seeded by the operating system, as URL-safe base64 without padding (43
/// characters): every random identifier the portal makes (OAuth `state`, CSRF tokens, sign-in ids) comes from
/// here, so that there is one place to judge their strength.
pub fn random_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // secrecy's own form, `SecretBox<str>([REDACTED])`, names its internals; this names the value's kind.
        f.write_str("Secret([REDACTED])")
    }
}

impl PartialEq for Secret {
    /// Compares in constant time: a comparison's duration says nothing of how much of a guess was right.
    fn eq(&self, other: &Self) -> bool {
        self.expose_secret()
            .as_bytes()
            .ct_eq(other.expose_secret().as_bytes())
            .into()
    }
}

impl Eq for Secret {}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    /// Any text is a secret (for clap: `--client-secret`, `--session-key`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Secret::new(text))
    }
}

impl serde::Serialize for Secret {
    /// Writes the value itself: serialization is how a store persists a token (the SDK's CSV, a JSON file).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose_secret())
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::from("1000.refresh-me");
        let shown = format!("{secret:?} {:?}", Some(&secret));
        assert!(!shown.contains("refresh-me"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
    }

    #[test]
    fn equal_values_are_equal_and_different_ones_are_not() {
        assert_eq!(Secret::from("abc"), Secret::from(String::from("abc")));
        assert_ne!(Secret::from("abc"), Secret::from("abd"));
        assert_ne!(Secret::from("abc"), Secret::from("abcd"));
    }

    #[test]
    fn random_tokens_are_256_bits_of_url_safe_text_and_differ() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a, b);
        assert_ne!(Secret::random(), Secret::random());
    }

    #[test]
    fn serde_round_trips_the_value_itself() {
        let json = serde_json::to_string(&Secret::from("o'brien")).unwrap();
        assert_eq!(json, "\"o'brien\"");
        let back: Secret = serde_json::from_str(&json).unwrap();
        assert_eq!(back.expose_secret(), "o'brien");
    }
}
