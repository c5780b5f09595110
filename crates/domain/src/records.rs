//! JSON records over the store: how every wing reads and writes its typed values.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::store::KvStore;

/// The error for a stored value that does not parse as what its key holds.
pub fn corrupt(key: &str, err: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        500,
        "corrupt_record",
        format!("stored value at {key} is unreadable: {err}"),
    )
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail: all keys are strings.
    serde_json::to_vec(value).unwrap_or_default()
}

pub async fn read_json<T: DeserializeOwned>(
    store: &dyn KvStore,
    key: &str,
) -> Result<Option<(Vec<u8>, T)>, ApiError> {
    match store.get(key).await? {
        None => Ok(None),
        Some(bytes) => {
            let value = serde_json::from_slice(&bytes).map_err(|e| corrupt(key, e))?;
            Ok(Some((bytes, value)))
        }
    }
}
