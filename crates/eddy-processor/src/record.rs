//! Conveniences on the generated record types.

use serde_json::Value;

use crate::{InputRecord, OutputRecord};

impl InputRecord {
    /// The value parsed as JSON (see [`crate::parse_json`]).
    pub fn json(&self) -> Result<Value, String> {
        crate::parse_json(self.value.as_deref())
    }

    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.key == name)
            .map(|h| h.value.as_slice())
    }
}

impl From<InputRecord> for OutputRecord {
    /// The record unchanged, to the pipeline's first output topic, keeping
    /// the input's timestamp.
    fn from(record: InputRecord) -> Self {
        OutputRecord {
            topic: None,
            key: record.key,
            value: record.value,
            headers: record.headers,
            timestamp: None,
        }
    }
}

impl OutputRecord {
    /// A record with only a value, to the pipeline's first output topic.
    pub fn with_value(value: impl Into<Vec<u8>>) -> Self {
        OutputRecord {
            topic: None,
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    /// A record whose value is `value` serialised as compact JSON.
    pub fn json(value: &Value) -> Self {
        OutputRecord::with_value(value.to_string())
    }

    /// Sends the record to the output topic `topic`.
    pub fn to_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// Sets the record's key.
    pub fn keyed(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }
}
