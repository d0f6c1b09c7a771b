//! Where a keyed record goes: Kafka's default partitioner, so data keyed in
//! Eddy lands where a Kafka client would put it. Broker and client share
//! this function, so both place a key identically.

/// The seed Kafka's `Utils.murmur2` uses.
const KAFKA_MURMUR2_SEED: u32 = 0x9747_b28c;

/// Kafka's `murmur2` of `key`, as a signed 32-bit value.
pub fn murmur2(key: &[u8]) -> i32 {
    murmur2::murmur2(key, KAFKA_MURMUR2_SEED) as i32
}

/// The partition for `key` among `partitions`:
/// `(murmur2(key) & 0x7fffffff) % partitions`, Kafka's `toPositive` rule.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) as u32 % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_kafka() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for &(key, expected) in cases {
            assert_eq!(murmur2(key), expected, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn keys_spread_and_stay_put() {
        assert_eq!(
            partition_for_key(b"foobar", 6),
            ((-790_332_482i32 & 0x7fff_ffff) % 6) as u32
        );
        let mut seen = [false; 4];
        for i in 0..100 {
            seen[partition_for_key(format!("key-{i}").as_bytes(), 4) as usize] = true;
        }
        assert_eq!(seen, [true; 4]);
    }
}
