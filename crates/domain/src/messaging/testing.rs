//! Conveniences for the wing's tests: JSON values in and out, and a receive that returns the
//! batch it committed.

use serde_json::Value;
use serde_json::value::RawValue;

use super::log::{Received, Sent};
use super::{Messaging, StoredMessage};
use crate::error::ApiError;

pub fn raw(value: Value) -> Box<RawValue> {
    RawValue::from_string(value.to_string()).expect("a JSON value is valid JSON")
}

impl StoredMessage {
    pub fn value(&self) -> Value {
        serde_json::from_str(self.payload.get()).expect("stored payloads are JSON")
    }
}

impl Messaging<'_> {
    pub async fn send_value(
        &self,
        subject: &str,
        sender_id: &str,
        group_id: &str,
        payload: Value,
    ) -> Result<Sent, ApiError> {
        self.send(subject, sender_id, group_id, raw(payload), None)
            .await
    }

    pub async fn poll(
        &self,
        subject: &str,
        client_id: &str,
        group_id: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Received, ApiError> {
        self.receive(
            subject,
            client_id,
            group_id,
            after,
            limit,
            |r| Ok(r.clone()),
        )
        .await
    }
}
