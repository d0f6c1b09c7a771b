//! Records of the internal `__consumer_offsets` topic.
//!
//! Keys and values are small versioned binary structs (big-endian):
//!
//! ```text
//! offset key:   u16 version=1, u8 kind=0, str group, str topic, u32 partition
//! offset value: u16 version=1, u64 offset, i64 commit time ms, bytes metadata
//! group key:    u16 version=1, u8 kind=1, str group
//! group value:  u16 version=1, i32 generation, u8 assignor
//! ```
//!
//! `str` is a u16 length and UTF-8 bytes; `bytes` a u32 length and bytes. A
//! null value is a tombstone (the topic is compacted, so only the newest
//! value per key survives).

use super::assignor::Assignor;

const VERSION: u16 = 1;
const KIND_OFFSET: u8 = 0;
const KIND_GROUP: u8 = 1;

/// What a key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Offset {
        group: String,
        topic: String,
        partition: u32,
    },
    Group {
        group: String,
    },
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: u64,
    pub commit_ms: i64,
    pub metadata: Vec<u8>,
}

/// The assignor byte of a group whose leader assigns.
const CLIENT_ASSIGNED: u8 = 4;

/// What survives a coordinator restart about a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupValue {
    pub generation: i32,
    /// `None`: the group's leader assigns (Kafka's classic protocol).
    pub assignor: Option<Assignor>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl Key {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = VERSION.to_be_bytes().to_vec();
        match self {
            Key::Offset {
                group,
                topic,
                partition,
            } => {
                out.push(KIND_OFFSET);
                put_str(&mut out, group);
                put_str(&mut out, topic);
                out.extend_from_slice(&partition.to_be_bytes());
            }
            Key::Group { group } => {
                out.push(KIND_GROUP);
                put_str(&mut out, group);
            }
        }
        out
    }

    pub fn decode(b: &[u8]) -> Option<Key> {
        let mut r = Reader(b);
        if r.u16()? != VERSION {
            return None;
        }
        let key = match r.u8()? {
            KIND_OFFSET => Key::Offset {
                group: r.str()?,
                topic: r.str()?,
                partition: r.u32()?,
            },
            KIND_GROUP => Key::Group { group: r.str()? },
            _ => return None,
        };
        r.0.is_empty().then_some(key)
    }
}

impl OffsetValue {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = VERSION.to_be_bytes().to_vec();
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(&self.commit_ms.to_be_bytes());
        out.extend_from_slice(&(self.metadata.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.metadata);
        out
    }

    pub fn decode(b: &[u8]) -> Option<OffsetValue> {
        let mut r = Reader(b);
        if r.u16()? != VERSION {
            return None;
        }
        let v = OffsetValue {
            offset: r.u64()?,
            commit_ms: r.u64()? as i64,
            metadata: r.bytes()?,
        };
        r.0.is_empty().then_some(v)
    }
}

impl GroupValue {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = VERSION.to_be_bytes().to_vec();
        out.extend_from_slice(&self.generation.to_be_bytes());
        out.push(match self.assignor {
            Some(Assignor::Range) => 1,
            Some(Assignor::RoundRobin) => 2,
            Some(Assignor::CooperativeSticky) => 3,
            None => CLIENT_ASSIGNED,
        });
        out
    }

    pub fn decode(b: &[u8]) -> Option<GroupValue> {
        let mut r = Reader(b);
        if r.u16()? != VERSION {
            return None;
        }
        let generation = r.u32()? as i32;
        let assignor = match r.u8()? {
            1 => Some(Assignor::Range),
            2 => Some(Assignor::RoundRobin),
            3 => Some(Assignor::CooperativeSticky),
            CLIENT_ASSIGNED => None,
            _ => return None,
        };
        r.0.is_empty().then_some(GroupValue {
            generation,
            assignor,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn str(&mut self) -> Option<String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.u32()? as usize;
        Some(self.take(n)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip_and_garbage_is_refused() {
        let keys = [
            Key::Offset {
                group: "g".into(),
                topic: "orders".into(),
                partition: 7,
            },
            Key::Group { group: "g".into() },
        ];
        for k in keys {
            assert_eq!(Key::decode(&k.encode()), Some(k.clone()));
            let mut longer = k.encode();
            longer.push(0);
            assert_eq!(Key::decode(&longer), None);
        }
        let v = OffsetValue {
            offset: 42,
            commit_ms: 1_700_000_000_000,
            metadata: b"seq".to_vec(),
        };
        assert_eq!(OffsetValue::decode(&v.encode()), Some(v));
        for assignor in [Some(Assignor::Range), None] {
            let g = GroupValue {
                generation: 9,
                assignor,
            };
            assert_eq!(GroupValue::decode(&g.encode()), Some(g));
        }
        assert_eq!(Key::decode(b"\x00\x02\x00"), None);
        assert_eq!(OffsetValue::decode(b"\x00\x01\x00"), None);
    }
}
