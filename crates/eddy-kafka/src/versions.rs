//! The APIs this listener serves and their versions: what ApiVersions
//! advertises and what a request's version is checked against.

use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};

/// One API: the versions advertised, and the lowest actually served.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Served {
    pub key: ApiKey,
    /// The lowest version ApiVersions advertises.
    pub advertised_min: i16,
    /// The lowest version answered (at least `advertised_min`).
    pub min: i16,
    pub max: i16,
}

/// Every API served. Produce is advertised from version 0 but served from
/// 3, as Kafka 4 does: librdkafka turns compression off when Produce's
/// advertised minimum is not 0, and every client that compresses sends 3
/// or later. Versions stop before those that name topics by id only
/// (Fetch 13, Produce 13) or need what Eddy does not have.
pub(crate) const SERVED: &[Served] = &[
    served(ApiKey::Produce, 0, 3, 11),
    served(ApiKey::Fetch, 4, 4, 12),
    served(ApiKey::ListOffsets, 1, 1, 6),
    served(ApiKey::Metadata, 0, 0, 12),
    served(ApiKey::FindCoordinator, 0, 0, 4),
    // The classic group protocol, kept from version 0 as Kafka does.
    served(ApiKey::JoinGroup, 0, 0, 7),
    served(ApiKey::SyncGroup, 0, 0, 5),
    served(ApiKey::Heartbeat, 0, 0, 4),
    served(ApiKey::LeaveGroup, 0, 0, 4),
    served(ApiKey::OffsetCommit, 2, 2, 8),
    served(ApiKey::OffsetFetch, 1, 1, 7),
    served(ApiKey::ApiVersions, 0, 0, 4),
    served(ApiKey::CreateTopics, 2, 2, 7),
    served(ApiKey::DeleteTopics, 1, 1, 5),
    // Kept from version 0: older librdkafka asks for exactly that.
    served(ApiKey::InitProducerId, 0, 0, 4),
    served(ApiKey::OffsetForLeaderEpoch, 2, 2, 4),
    served(ApiKey::DescribeGroups, 0, 0, 5),
    served(ApiKey::ListGroups, 0, 0, 5),
    served(ApiKey::DescribeConfigs, 1, 1, 4),
    served(ApiKey::CreatePartitions, 0, 0, 3),
    served(ApiKey::DescribeCluster, 0, 0, 1),
    // Version 0 would be followed by bare SASL frames; 1 wraps them in
    // SaslAuthenticate, which every current client uses.
    served(ApiKey::SaslHandshake, 1, 1, 1),
    served(ApiKey::SaslAuthenticate, 0, 0, 2),
];

const fn served(key: ApiKey, advertised_min: i16, min: i16, max: i16) -> Served {
    Served {
        key,
        advertised_min,
        min,
        max,
    }
}

/// The API's entry, if this listener serves it.
pub(crate) fn lookup(key: ApiKey) -> Option<&'static Served> {
    SERVED.iter().find(|s| s.key == key)
}

impl Served {
    pub fn serves(&self, version: i16) -> bool {
        (self.min..=self.max).contains(&version)
    }
}

/// The answer to ApiVersions; `error_code` 35 (UNSUPPORTED_VERSION) when
/// the client asked with a version this listener does not know, which is
/// answered in version 0 so that any client can read the list.
pub(crate) fn api_versions(error_code: i16) -> ApiVersionsResponse {
    let api_keys = SERVED
        .iter()
        .map(|s| {
            ApiVersion::default()
                .with_api_key(s.key as i16)
                .with_min_version(s.advertised_min)
                .with_max_version(s.max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::protocol::Message;

    use super::*;

    /// A version advertised must be one the message codec knows, or the
    /// listener would accept a request it cannot decode.
    #[test]
    fn every_served_version_is_one_the_codec_knows() {
        for s in SERVED {
            let codec = s.key.valid_versions();
            assert!(s.advertised_min <= s.min && s.min <= s.max, "{:?}", s.key);
            assert!(
                codec.min <= s.min && s.max <= codec.max,
                "{:?} serves {}..={} but the codec knows {}..={}",
                s.key,
                s.min,
                s.max,
                codec.min,
                codec.max
            );
        }
        assert_eq!(
            ApiVersionsResponse::VERSIONS.max,
            lookup(ApiKey::ApiVersions).map_or(-1, |s| s.max)
        );
    }
}
