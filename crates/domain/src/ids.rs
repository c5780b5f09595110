//! Identifier rules shared by every endpoint: `client_id`, `group_id` and user names are
//! 1–128 characters of `[A-Za-z0-9._:-]`. The alphabet excludes `/`, which the key-value
//! schema uses as its separator, so an ID can never reach into another key's namespace.

use crate::error::ApiError;

pub const MAX_ID_LEN: usize = 128;

/// Whether `id` is a valid identifier.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Checks `value` as the identifier named `field`, with a 400 naming the field otherwise.
pub fn validate_id(field: &str, value: &str) -> Result<(), ApiError> {
    if is_valid_id(value) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_id",
            format!("{field} must be 1-{MAX_ID_LEN} characters of [A-Za-z0-9._:-]"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in ["a", "client-1", "group.a_b:c", &"x".repeat(128)] {
            assert!(is_valid_id(ok), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            &"x".repeat(129),
            "a/b",
            "a b",
            "a\0",
            "é",
            "a\\b",
            "a%2f",
            "<script>",
        ] {
            assert!(!is_valid_id(bad), "{bad:?}");
            assert_eq!(validate_id("client_id", bad).unwrap_err().status, 400);
        }
    }

    proptest! {
        #[test]
        fn valid_ids_never_contain_the_key_separator(s in "\\PC{0,140}") {
            if is_valid_id(&s) {
                prop_assert!(!s.contains('/'));
                prop_assert!(s.len() <= MAX_ID_LEN);
            }
        }
    }
}
