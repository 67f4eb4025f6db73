//! `page_token`s for record lists past the first 2,000 records (`docs/zoho-protocol.md#page-tokens`).
//!
//! A token is self-contained and signed, so the sandbox keeps nothing per token however many lists it answers:
//! it names the user it was issued to, the position in the list where its page starts, when it expires, and a
//! digest of the parameters it is bound to (the module and the query without `page`/`page_token`), followed by
//! an HMAC-SHA256 of those under a key made at start. Zoho's tokens are opaque to clients; so are these (a client
//! has no use for their contents, and cannot change them without the key). Tokens end with the sandbox process.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::Rng as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// How long a page token works unless a test says otherwise. Zoho's pages give `page_token_expiry` with each
/// token but not the lifetime; a day is what integrators report (`docs/zoho-protocol.md#page-tokens`).
pub const DEFAULT_PAGE_TOKEN_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The format byte that starts every token of this layout.
const FORMAT: u8 = 1;
/// Format, persona, position (u32), expiry in epoch ms (i64), bound digest.
const PAYLOAD_LEN: usize = 1 + 1 + 4 + 8 + BOUND_LEN;
const BOUND_LEN: usize = 8;
/// The HMAC is cut to 16 bytes: the token stays within Zoho's 96 characters (76 in hex).
const MAC_LEN: usize = 16;

/// What a page token's parameters must match: a digest of the module and of the query's other parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound([u8; BOUND_LEN]);

impl Bound {
    /// The digest of `module` and `pairs` (a request's query), leaving out `page` and `page_token` (the two ways
    /// to name a page). The pairs are taken in a fixed order, so reordering a query changes nothing; adding,
    /// altering or dropping a parameter does.
    pub fn of(module: &str, pairs: &[(String, String)]) -> Bound {
        let mut bound: Vec<&(String, String)> = pairs
            .iter()
            .filter(|(key, _)| key != "page" && key != "page_token")
            .collect();
        bound.sort();
        let mut digest = Sha256::new();
        digest.update(module.as_bytes());
        for (key, value) in bound {
            digest.update([0]);
            digest.update(key.as_bytes());
            digest.update([0]);
            digest.update(value.as_bytes());
        }
        let mut out = [0; BOUND_LEN];
        out.copy_from_slice(&digest.finalize()[..BOUND_LEN]);
        Bound(out)
    }
}

/// Why a page token does not open a page.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a token of this sandbox, another user's, or issued for other parameters: Zoho's
    /// `TOKEN_BOUND_DATA_MISMATCH`.
    Mismatch,
    /// Past its expiry: Zoho's `EXPIRED_VALUE`.
    Expired,
}

/// Issues and checks page tokens.
pub struct PageTokens {
    key: [u8; 32],
    ttl_ms: AtomicI64,
}

impl Default for PageTokens {
    fn default() -> Self {
        PageTokens {
            key: rand::rng().random(),
            ttl_ms: AtomicI64::new(millis(DEFAULT_PAGE_TOKEN_TTL)),
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 4)
}

impl PageTokens {
    /// How long tokens issued from now on work.
    pub fn set_ttl(&self, ttl: Duration) {
        self.ttl_ms.store(millis(ttl), Ordering::Relaxed);
    }

    /// A token for the page starting at `position` of the list `bound` names, for `persona`; and when it expires
    /// (epoch ms).
    pub fn issue(
        &self,
        persona: usize,
        position: usize,
        bound: Bound,
        now_ms: i64,
    ) -> (String, i64) {
        let expires_at_ms = now_ms.saturating_add(self.ttl_ms.load(Ordering::Relaxed));
        let mut token = [0u8; PAYLOAD_LEN + MAC_LEN];
        token[0] = FORMAT;
        token[1] = u8::try_from(persona).unwrap_or(u8::MAX);
        token[2..6].copy_from_slice(&u32::try_from(position).unwrap_or(u32::MAX).to_be_bytes());
        token[6..14].copy_from_slice(&expires_at_ms.to_be_bytes());
        token[14..PAYLOAD_LEN].copy_from_slice(&bound.0);
        let mac = self.mac(&token[..PAYLOAD_LEN]);
        token[PAYLOAD_LEN..].copy_from_slice(&mac);
        (hex::encode(token), expires_at_ms)
    }

    /// The position `token` starts its page at, if it is this sandbox's, for `persona` and `bound`, and not
    /// expired.
    pub fn open(
        &self,
        token: &str,
        persona: usize,
        bound: Bound,
        now_ms: i64,
    ) -> Result<usize, Refusal> {
        let bytes = hex::decode(token).map_err(|_| Refusal::Mismatch)?;
        if bytes.len() != PAYLOAD_LEN + MAC_LEN || bytes[0] != FORMAT {
            return Err(Refusal::Mismatch);
        }
        let (payload, mac) = bytes.split_at(PAYLOAD_LEN);
        if !bool::from(self.mac(payload).ct_eq(mac)) {
            return Err(Refusal::Mismatch);
        }
        if usize::from(payload[1]) != persona || payload[14..] != bound.0 {
            return Err(Refusal::Mismatch);
        }
        let expires_at_ms = i64::from_be_bytes(payload[6..14].try_into().unwrap_or_default());
        if expires_at_ms <= now_ms {
            return Err(Refusal::Expired);
        }
        let position = u32::from_be_bytes(payload[2..6].try_into().unwrap_or_default());
        usize::try_from(position).map_err(|_| Refusal::Mismatch)
    }

    fn mac(&self, payload: &[u8]) -> [u8; MAC_LEN] {
        // HMAC takes a key of any length: `new_from_slice` cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(payload);
        let full = mac.finalize().into_bytes();
        let mut out = [0; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_token_opens_its_page_for_its_user_and_parameters_until_it_expires() {
        let tokens = PageTokens::default();
        let bound = Bound::of(
            "Leads",
            &pairs(&[("fields", "Last_Name"), ("per_page", "20")]),
        );
        let (token, expires) = tokens.issue(0, 2000, bound, 1_000);
        assert!(
            token.len() <= 96,
            "Zoho's page_token is at most 96 characters"
        );
        assert_eq!(expires, 1_000 + millis(DEFAULT_PAGE_TOKEN_TTL));

        assert_eq!(tokens.open(&token, 0, bound, 2_000), Ok(2000));
        assert_eq!(tokens.open(&token, 1, bound, 2_000), Err(Refusal::Mismatch));
        let other = Bound::of("Leads", &pairs(&[("fields", "Email"), ("per_page", "20")]));
        assert_eq!(tokens.open(&token, 0, other, 2_000), Err(Refusal::Mismatch));
        assert_eq!(
            tokens.open(&token, 0, bound, expires),
            Err(Refusal::Expired)
        );
    }

    #[test]
    fn a_changed_forged_or_foreign_token_is_refused() {
        let tokens = PageTokens::default();
        let bound = Bound::of("Leads", &[]);
        let (token, _) = tokens.issue(0, 2000, bound, 0);
        // Another position, with the MAC left as it was.
        let mut changed = hex::decode(&token).unwrap();
        changed[5] ^= 1;
        assert_eq!(
            tokens.open(&hex::encode(changed), 0, bound, 1),
            Err(Refusal::Mismatch)
        );
        assert_eq!(tokens.open("not-hex", 0, bound, 1), Err(Refusal::Mismatch));
        assert_eq!(tokens.open("", 0, bound, 1), Err(Refusal::Mismatch));
        let (elsewhere, _) = PageTokens::default().issue(0, 2000, bound, 0);
        assert_eq!(
            tokens.open(&elsewhere, 0, bound, 1),
            Err(Refusal::Mismatch),
            "another sandbox's key"
        );
    }

    #[test]
    fn the_bound_ignores_the_page_and_the_order_of_parameters() {
        let one = Bound::of(
            "Leads",
            &pairs(&[("fields", "A"), ("page", "100"), ("sort_by", "id")]),
        );
        let two = Bound::of(
            "Leads",
            &pairs(&[("sort_by", "id"), ("page_token", "x"), ("fields", "A")]),
        );
        assert_eq!(one, two);
        assert_ne!(
            one,
            Bound::of("Contacts", &pairs(&[("fields", "A"), ("sort_by", "id")]))
        );
        assert_ne!(one, Bound::of("Leads", &pairs(&[("fields", "A")])));
    }

    #[test]
    fn a_shorter_lifetime_applies_to_tokens_issued_after_it() {
        let tokens = PageTokens::default();
        tokens.set_ttl(Duration::from_secs(60));
        let (token, expires) = tokens.issue(2, 0, Bound::of("Leads", &[]), 0);
        assert_eq!(expires, 60_000);
        assert_eq!(
            tokens.open(&token, 2, Bound::of("Leads", &[]), 60_000),
            Err(Refusal::Expired)
        );
    }
}
