//! DescribeConfigs: every setting of a topic or of this broker, with its
//! value and where the value comes from (the topic's own config, the
//! broker's settings, or Eddy's default), as Kafka's tools show them.
//! Eddy sets a topic's configs when it is created; nothing alters them
//! later, so every entry is read-only.

use eddy_broker::TopicDefaults;
use eddy_log::LogConfig;
use eddy_meta::{CLUSTER_RESOURCE, Operation, ResourceType, UNCLEAN_ELECTION_CONFIG};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_request::{
    DescribeConfigsRequest, DescribeConfigsResource,
};
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
    DescribeConfigsSynonym,
};
use kafka_protocol::protocol::StrBytes;

use crate::Shared;
use crate::connection::Session;

/// Kafka's resource types (`ConfigResource.Type`).
const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// Kafka's config sources (`DescribeConfigsResponse.ConfigSource`).
const FROM_TOPIC: i8 = 1;
const FROM_BROKER: i8 = 4;
const FROM_DEFAULT: i8 = 5;

/// Kafka's config types (`ConfigEntry.ConfigType`).
const BOOLEAN: i8 = 1;
const STRING: i8 = 2;
const INT: i8 = 3;
const LONG: i8 = 5;
const LIST: i8 = 7;

const MIN_ISR: &str = "min.insync.replicas";

/// A topic setting, its type and the broker setting that gives its
/// default (Kafka's name for it, as its synonym).
struct Setting {
    topic_key: &'static str,
    broker_key: Option<&'static str>,
    kind: i8,
}

const fn setting(topic_key: &'static str, broker_key: Option<&'static str>, kind: i8) -> Setting {
    Setting {
        topic_key,
        broker_key,
        kind,
    }
}

/// Every topic setting Eddy has.
const SETTINGS: &[Setting] = &[
    setting("cleanup.policy", Some("log.cleanup.policy"), LIST),
    setting(
        "delete.retention.ms",
        Some("log.cleaner.delete.retention.ms"),
        LONG,
    ),
    setting("eddy.changelog", None, BOOLEAN),
    setting("flush.ms", Some("log.flush.interval.ms"), STRING),
    setting(
        "index.interval.bytes",
        Some("log.index.interval.bytes"),
        INT,
    ),
    setting("max.message.bytes", Some("message.max.bytes"), INT),
    setting(MIN_ISR, Some(MIN_ISR), INT),
    setting(
        "producer.id.expiration.ms",
        Some("producer.id.expiration.ms"),
        INT,
    ),
    setting("retention.bytes", Some("log.retention.bytes"), LONG),
    setting("retention.ms", Some("log.retention.ms"), LONG),
    setting("segment.bytes", Some("log.segment.bytes"), INT),
    setting("segment.ms", Some("log.roll.ms"), LONG),
    setting(
        UNCLEAN_ELECTION_CONFIG,
        Some(UNCLEAN_ELECTION_CONFIG),
        BOOLEAN,
    ),
];

/// A setting's default as the broker has it, and Eddy's own default.
fn defaults(key: &str, broker: &TopicDefaults) -> (String, String) {
    match key {
        MIN_ISR => (broker.min_insync_replicas.to_string(), "1".into()),
        UNCLEAN_ELECTION_CONFIG => ("false".into(), "false".into()),
        key => (
            broker.log.get(key).unwrap_or_default(),
            LogConfig::default().get(key).unwrap_or_default(),
        ),
    }
}

pub(crate) fn describe_configs(
    request: DescribeConfigsRequest,
    version: i16,
    shared: &Shared,
    session: &Session,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let answer = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match entries(&resource, request.include_synonyms, shared, session) {
                Ok(mut configs) => {
                    if version < 3 {
                        for c in &mut configs {
                            c.config_type = 0;
                        }
                    }
                    answer.with_configs(configs)
                }
                Err((error, message)) => answer
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

type Refusal = (ResponseError, String);

fn entries(
    resource: &DescribeConfigsResource,
    synonyms: bool,
    shared: &Shared,
    session: &Session,
) -> Result<Vec<DescribeConfigsResourceResult>, Refusal> {
    let name = resource.resource_name.to_string();
    let wanted = |key: &str| {
        resource
            .configuration_keys
            .as_ref()
            .is_none_or(|keys| keys.iter().any(|k| k.as_str() == key))
    };
    let all = match resource.resource_type {
        TOPIC => topic_entries(&name, synonyms, shared, session)?,
        BROKER => broker_entries(&name, synonyms, shared, session)?,
        other => {
            return Err((
                ResponseError::InvalidRequest,
                format!(
                    "Eddy describes the configs of topics (2) and brokers (4), not type {other}"
                ),
            ));
        }
    };
    Ok(all
        .into_iter()
        .filter(|c| wanted(c.name.as_str()))
        .collect())
}

fn topic_entries(
    name: &str,
    synonyms: bool,
    shared: &Shared,
    session: &Session,
) -> Result<Vec<DescribeConfigsResourceResult>, Refusal> {
    if !session.may(shared, ResourceType::Topic, name, Operation::Describe) {
        return Err((
            ResponseError::TopicAuthorizationFailed,
            format!("{} may not describe topic {name:?}", session.principal),
        ));
    }
    let state = shared.broker.meta.state();
    let Some(topic) = state.topics.get(name) else {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name:?} does not exist"),
        ));
    };
    let broker = shared.broker.topics.defaults();
    Ok(SETTINGS
        .iter()
        .map(|s| {
            let (default, builtin) = defaults(s.topic_key, broker);
            let default_source = if default == builtin {
                FROM_DEFAULT
            } else {
                FROM_BROKER
            };
            let mut chain = Vec::new();
            if let Some(own) = topic.configs.get(s.topic_key) {
                chain.push((s.topic_key, own.clone(), FROM_TOPIC));
            }
            chain.push((s.broker_key.unwrap_or(s.topic_key), default, default_source));
            entry(s.topic_key, s.kind, chain, synonyms)
        })
        .collect())
}

fn broker_entries(
    name: &str,
    synonyms: bool,
    shared: &Shared,
    session: &Session,
) -> Result<Vec<DescribeConfigsResourceResult>, Refusal> {
    if !session.may(
        shared,
        ResourceType::Cluster,
        CLUSTER_RESOURCE,
        Operation::Describe,
    ) {
        return Err((
            ResponseError::ClusterAuthorizationFailed,
            format!("{} may not describe the cluster", session.principal),
        ));
    }
    let me = shared.broker.config.node_id;
    if !name.is_empty() && name != me.0.to_string() {
        return Err((
            ResponseError::InvalidRequest,
            format!("this is broker {me}: ask broker {name} for its own configs"),
        ));
    }
    let broker = shared.broker.topics.defaults();
    let mut all: Vec<DescribeConfigsResourceResult> = SETTINGS
        .iter()
        .filter_map(|s| {
            let key = s.broker_key?;
            let (value, builtin) = defaults(s.topic_key, broker);
            let source = if value == builtin {
                FROM_DEFAULT
            } else {
                FROM_BROKER
            };
            Some(entry(key, s.kind, vec![(key, value, source)], synonyms))
        })
        .collect();
    let own = [
        ("num.partitions", broker.partitions.to_string(), INT),
        (
            "default.replication.factor",
            broker.replication_factor.to_string(),
            INT,
        ),
        (
            "auto.create.topics.enable",
            shared.config.auto_create_topics.to_string(),
            BOOLEAN,
        ),
    ];
    for (key, value, kind) in own {
        all.push(entry(key, kind, vec![(key, value, FROM_BROKER)], synonyms));
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

/// One entry: its value is the first of `chain` (the most specific
/// source), and the chain is its synonyms when they are asked for.
fn entry(
    name: &str,
    kind: i8,
    chain: Vec<(&str, String, i8)>,
    synonyms: bool,
) -> DescribeConfigsResourceResult {
    let (value, source) = chain
        .first()
        .map_or((String::new(), FROM_DEFAULT), |(_, v, s)| (v.clone(), *s));
    let synonyms = if synonyms {
        chain
            .into_iter()
            .map(|(name, value, source)| {
                DescribeConfigsSynonym::default()
                    .with_name(StrBytes::from_string(name.to_string()))
                    .with_value(Some(StrBytes::from_string(value)))
                    .with_source(source)
            })
            .collect()
    } else {
        Vec::new()
    };
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_value(Some(StrBytes::from_string(value)))
        .with_read_only(true)
        .with_config_source(source)
        .with_is_sensitive(false)
        .with_config_type(kind)
        .with_synonyms(synonyms)
}

#[cfg(test)]
mod tests {
    use eddy_log::CONFIG_KEYS;

    use super::*;

    #[test]
    fn every_topic_setting_eddy_has_is_described() {
        for key in CONFIG_KEYS {
            assert!(
                SETTINGS.iter().any(|s| s.topic_key == *key),
                "{key} is missing from DescribeConfigs' settings"
            );
        }
        for s in SETTINGS {
            let (broker, builtin) = defaults(s.topic_key, &TopicDefaults::default());
            assert!(!broker.is_empty(), "{} has no default", s.topic_key);
            assert_eq!(broker, builtin, "{}", s.topic_key);
        }
    }
}
