//! The raw material of credentials: fresh random secrets, their digests, and comparisons that
//! take the same time whatever they compare.

use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// `bytes` random bytes from the platform's entropy source, hex-encoded. Unlike
/// [`Env::random_id`](crate::env::Env::random_id) there is no fallback: a credential is never
/// made from anything weaker.
pub fn random_hex(bytes: usize) -> Result<String, ApiError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| {
        ApiError::new(
            500,
            "entropy_unavailable",
            format!("no entropy source: {e}"),
        )
    })?;
    Ok(hex::encode(buf))
}

/// The SHA-256 digest of `secret`, hex-encoded: what the store keeps instead of a refresh
/// token or an API key. A fast hash is enough here, unlike for passwords: these secrets are
/// 256 random bits, so there is nothing to guess.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether `s` is exactly `len` lower-case hex digits.
pub fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_fresh_and_digests_stable() {
        let a = random_hex(32).unwrap();
        assert!(is_hex(&a, 64));
        assert_ne!(a, random_hex(32).unwrap());
        assert_eq!(digest("abc"), digest("abc"));
        assert!(is_hex(&digest("abc"), 64));
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
        assert!(!is_hex("ABCD", 4));
    }
}
