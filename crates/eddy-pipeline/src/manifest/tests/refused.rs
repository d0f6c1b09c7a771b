//! What is refused, and exactly what the refusal says.
//!
//! The line numbers refer to [`VALID`]:
//!
//! ```text
//!  1 apiVersion: eddy/v1
//!  2 kind: Pipeline
//!  3 metadata:
//!  4   name: truck-alerts
//!  5 spec:
//!  6   input:
//!  7     topics: [truck_gps]
//!  8     startFrom: earliest
//!  9   processor:
//! 10     name: geofence
//! 11     version: 2
//! 12     params: { min_lat: "48.5", max_lat: 49 }
//! 13   outputs:
//! 14     - topic: truck_alerts
//! 15       partitions: 10
//! 16   delivery: exactly-once
//! 17   parallelism: 4
//! 18   batch: { maxRecords: 256, maxWaitMs: 50 }
//! 19   limits: { memoryMiB: 64, cpuMsPerBatch: 200 }
//! 20   onError: { deadLetter: truck_alerts.dlq }
//! ```

use super::super::parse;
use super::accepted::parse_one;
use super::{VALID, assert_refused, assert_refused_in, errors_of, with_line};

const NAME_CHARS: &str = "use only letters a-z and A-Z, digits, '.', '_' and '-'";
const SPEC_FIELDS: &str =
    "input, processor, outputs, delivery, parallelism, batch, limits, onError, state or eventTime";

mod header {
    use super::*;

    #[test]
    fn api_version_must_be_eddy_v1() {
        assert_refused(
            &with_line(1, "apiVersion: eddy/v2"),
            "apiVersion",
            (1, 13),
            "expected eddy/v1, found eddy/v2",
        );
    }

    #[test]
    fn kind_must_be_pipeline() {
        assert_refused(
            &with_line(2, "kind: Deployment"),
            "kind",
            (2, 7),
            "expected Pipeline, found Deployment",
        );
    }

    #[test]
    fn a_foreign_kind_is_the_only_error_reported() {
        // The rest is another schema: its fields would only be follow-on errors.
        let text =
            with_line(2, "kind: Deployment").replace("delivery: exactly-once", "replicas: 3");
        assert_refused(&text, "kind", (2, 7), "expected Pipeline, found Deployment");
    }

    #[test]
    fn a_missing_api_version_is_reported_at_the_document() {
        assert_refused(
            &with_line(1, ""),
            "",
            (1, 1),
            "missing required field apiVersion",
        );
    }

    #[test]
    fn missing_fields_of_one_mapping_are_one_error() {
        let errors = errors_of("a: 1\n");
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "missing required fields apiVersion, kind, metadata and spec",
                "unknown field a; expected apiVersion, kind, metadata or spec",
            ]
        );
    }

    #[test]
    fn a_document_must_be_a_mapping() {
        assert_refused("- a\n- b\n", "", (1, 1), "expected a mapping, found a list");
    }
}

mod required_fields {
    use super::*;

    #[test]
    fn metadata_name() {
        let text = VALID.replace("metadata:\n  name: truck-alerts\n", "metadata: {}\n");
        assert_refused(&text, "metadata", (3, 11), "missing required field name");
    }

    #[test]
    fn spec() {
        let text: String = VALID.lines().take(4).map(|l| format!("{l}\n")).collect();
        assert_refused(&text, "", (1, 1), "missing required field spec");
    }

    #[test]
    fn input_topics() {
        assert_refused(
            &with_line(7, ""),
            "spec.input",
            (7, 5),
            "missing required field topics",
        );
    }

    #[test]
    fn processor_name() {
        assert_refused(
            &with_line(10, ""),
            "spec.processor",
            (10, 5),
            "missing required field name",
        );
    }

    #[test]
    fn outputs() {
        let text = VALID.replace(
            "  outputs:\n    - topic: truck_alerts\n      partitions: 10\n",
            "",
        );
        assert_refused(&text, "spec", (6, 3), "missing required field outputs");
    }

    #[test]
    fn output_topic() {
        let text = VALID.replace(
            "    - topic: truck_alerts\n      partitions: 10\n",
            "    - partitions: 10\n",
        );
        assert_refused(
            &text,
            "spec.outputs[0]",
            (14, 7),
            "missing required field topic",
        );
    }

    #[test]
    fn delivery() {
        assert_refused(
            &with_line(16, ""),
            "spec",
            (6, 3),
            "missing required field delivery",
        );
    }
}

mod unknown_fields {
    use super::*;

    #[test]
    fn at_the_top() {
        assert_refused(
            &with_line(3, "status: {}\nmetadata:"),
            "",
            (3, 1),
            "unknown field status; expected apiVersion, kind, metadata or spec",
        );
    }

    #[test]
    fn in_metadata() {
        assert_refused(
            &with_line(4, "  name: truck-alerts\n  labels: {}"),
            "metadata",
            (5, 3),
            "unknown field labels; expected name",
        );
    }

    #[test]
    fn in_spec() {
        assert_refused(
            &with_line(17, "  paralelism: 4"),
            "spec",
            (17, 3),
            &format!("unknown field paralelism; expected {SPEC_FIELDS}"),
        );
    }

    #[test]
    fn in_input_and_start_from() {
        assert_refused(
            &with_line(8, "    startfrom: earliest"),
            "spec.input",
            (8, 5),
            "unknown field startfrom; expected topics or startFrom",
        );
        assert_refused(
            &with_line(8, "    startFrom: { ofset: 3 }"),
            "spec.input.startFrom",
            (8, 18),
            "unknown field ofset; expected offset or timestamp",
        );
    }

    #[test]
    fn in_processor() {
        assert_refused(
            &with_line(11, "    versions: 2"),
            "spec.processor",
            (11, 5),
            "unknown field versions; expected name, version or params",
        );
    }

    #[test]
    fn in_an_output() {
        assert_refused(
            &with_line(15, "      partition: 10"),
            "spec.outputs[0]",
            (15, 7),
            "unknown field partition; expected topic, partitions or replicationFactor",
        );
    }

    #[test]
    fn in_batch_limits_and_on_error() {
        assert_refused(
            &with_line(18, "  batch: { maxRecord: 256, maxWaitMs: 50 }"),
            "spec.batch",
            (18, 12),
            "unknown field maxRecord; expected maxRecords or maxWaitMs",
        );
        assert_refused(
            &with_line(19, "  limits: { memoryMB: 64, cpuMsPerBatch: 200 }"),
            "spec.limits",
            (19, 13),
            "unknown field memoryMB; expected memoryMiB, cpuMsPerBatch, stateMiB or stateDiskMiB",
        );
        assert_refused(
            &with_line(20, "  onError: { deadletter: dlq }"),
            "spec.onError",
            (20, 14),
            "unknown field deadletter; expected deadLetter",
        );
    }

    #[test]
    fn a_field_given_twice() {
        assert_refused(
            &with_line(17, "  parallelism: 4\n  parallelism: 5"),
            "spec",
            (18, 3),
            "duplicate field parallelism; it is already given at line 17, column 3",
        );
    }
}

mod values {
    use super::*;

    #[test]
    fn delivery_is_one_of_three_words() {
        assert_refused(
            &with_line(16, "  delivery: exactly_once"),
            "spec.delivery",
            (16, 13),
            "expected at-most-once, at-least-once or exactly-once, found exactly_once",
        );
    }

    #[test]
    fn null_is_not_a_default() {
        assert_refused(
            &with_line(16, "  delivery:"),
            "spec.delivery",
            // An empty value is where its colon is.
            (16, 11),
            "expected at-most-once, at-least-once or exactly-once, found nothing",
        );
        assert_refused(
            &with_line(17, "  parallelism: ~"),
            "spec.parallelism",
            (17, 16),
            "expected an integer from 1 to 256, found null (~)",
        );
    }

    #[test]
    fn integers_are_checked_against_their_range() {
        let cases = [
            (
                17,
                "  parallelism: 0",
                "spec.parallelism",
                16,
                "1 to 256, found 0",
            ),
            (
                17,
                "  parallelism: 257",
                "spec.parallelism",
                16,
                "1 to 256, found 257",
            ),
            (
                11,
                "    version: 0",
                "spec.processor.version",
                14,
                "1 to 4294967295, found 0",
            ),
            (
                11,
                "    version: 4294967296",
                "spec.processor.version",
                14,
                "1 to 4294967295, found 4294967296",
            ),
            (
                15,
                "      partitions: 10001",
                "spec.outputs[0].partitions",
                19,
                "1 to 10000, found 10001",
            ),
            (
                15,
                "      replicationFactor: 0",
                "spec.outputs[0].replicationFactor",
                26,
                "1 to 16, found 0",
            ),
            (
                18,
                "  batch: { maxRecords: 65537, maxWaitMs: 50 }",
                "spec.batch.maxRecords",
                24,
                "1 to 65536, found 65537",
            ),
            (
                18,
                "  batch: { maxRecords: 256, maxWaitMs: 60001 }",
                "spec.batch.maxWaitMs",
                40,
                "0 to 60000, found 60001",
            ),
            (
                19,
                "  limits: { memoryMiB: 0, cpuMsPerBatch: 200 }",
                "spec.limits.memoryMiB",
                24,
                "1 to 4096, found 0",
            ),
            (
                19,
                "  limits: { memoryMiB: 64, cpuMsPerBatch: 4 }",
                "spec.limits.cpuMsPerBatch",
                43,
                "5 to 60000, found 4",
            ),
        ];
        for (line, replacement, path, column, message) in cases {
            assert_refused(
                &with_line(line, replacement),
                path,
                (line, column),
                &format!("expected an integer from {message}"),
            );
        }
    }

    #[test]
    fn integers_are_whole_unsigned_and_unquoted() {
        let parallelism = |value: &str| with_line(17, &format!("  parallelism: {value}"));
        let refused = |value: &str, found: &str| {
            assert_refused(
                &parallelism(value),
                "spec.parallelism",
                (17, 16),
                &format!("expected an integer from 1 to 256, found {found}"),
            );
        };
        refused("4.0", "4.0");
        refused("-1", "-1");
        refused("four", "four");
        refused("[4]", "a list");
        refused(
            "\"4\"",
            "\"4\", which is quoted and so a string; remove the quotes",
        );
        assert_eq!(parse_one(&parallelism("0x10")).spec.parallelism, 16);
        assert_eq!(parse_one(&parallelism("+8")).spec.parallelism, 8);
    }

    #[test]
    fn the_latest_version_is_asked_for_by_leaving_version_out() {
        assert_eq!(parse_one(&with_line(11, "")).spec.processor.version, None);
        assert_eq!(
            parse_one(&with_line(11, "    version: 4294967295"))
                .spec
                .processor
                .version,
            Some(u32::MAX)
        );
    }

    #[test]
    fn start_from_is_a_word_an_offset_or_a_timestamp() {
        let forms = "earliest, latest, {offset: N} or {timestamp: RFC3339}";
        assert_refused(
            &with_line(8, "    startFrom: beginning"),
            "spec.input.startFrom",
            (8, 16),
            &format!("expected {forms}, found beginning"),
        );
        assert_refused(
            &with_line(8, "    startFrom: {}"),
            "spec.input.startFrom",
            (8, 16),
            &format!("expected {forms}, found an empty mapping"),
        );
        assert_refused(
            &with_line(
                8,
                "    startFrom: { offset: 1, timestamp: 2026-12-01T10:00:00Z }",
            ),
            "spec.input.startFrom",
            (8, 16),
            "expected either offset or timestamp, found both",
        );
        assert_refused(
            &with_line(8, "    startFrom: { offset: -1 }"),
            "spec.input.startFrom.offset",
            (8, 26),
            "expected an integer from 0 to 18446744073709551615, found -1",
        );
    }

    #[test]
    fn a_start_timestamp_is_rfc3339_from_1970() {
        for bad in [
            "2026-13-01T10:00:00Z",
            "2026-02-30T10:00:00Z",
            "2026-12-01T10:00:00",
            "2026-12-01 10:00:00Z",
            "2026-12-01",
            "2026-12-01T10:00:00+25:00",
            "1969-12-31T23:59:59Z",
            "yesterday",
        ] {
            assert_refused(
                &with_line(8, &format!("    startFrom: {{ timestamp: \"{bad}\" }}")),
                "spec.input.startFrom.timestamp",
                (8, 29),
                &format!(
                    "expected an RFC 3339 time from 1970 to 9999 such as \
                     2026-12-01T10:00:00Z, found \"{bad}\""
                ),
            );
        }
    }

    #[test]
    fn on_error_is_stop_skip_or_a_dead_letter() {
        assert_refused(
            &with_line(20, "  onError: retry"),
            "spec.onError",
            (20, 12),
            "expected stop, skip or {deadLetter: TOPIC}, found retry",
        );
        assert_refused(
            &with_line(20, "  onError: {}"),
            "spec.onError",
            (20, 12),
            "expected stop, skip or {deadLetter: TOPIC}, found an empty mapping",
        );
    }

    #[test]
    fn sections_must_be_mappings_and_lists_lists() {
        assert_refused(
            &with_line(18, "  batch: 256"),
            "spec.batch",
            (18, 10),
            "expected a mapping, found 256",
        );
        assert_refused(
            &with_line(7, "    topics: truck_gps"),
            "spec.input.topics",
            (7, 13),
            "expected a list of topic names, found truck_gps",
        );
    }

    #[test]
    fn tags_are_refused() {
        assert_refused(
            &with_line(17, "  parallelism: !!int 4"),
            "spec.parallelism",
            (17, 16),
            "YAML tags are not supported; remove !!int",
        );
        assert_refused(
            &with_line(16, "  delivery: !custom exactly-once"),
            "spec.delivery",
            (16, 13),
            "YAML tags are not supported; remove !custom",
        );
    }

    #[test]
    fn an_error_in_an_aliased_value_points_at_the_alias() {
        let text =
            with_line(7, "    topics: [&t truck_gps]").replace("maxRecords: 256", "maxRecords: *t");
        assert_refused(
            &text,
            "spec.batch.maxRecords",
            (18, 24),
            "expected an integer from 1 to 65536, found truck_gps",
        );
    }
}

mod names {
    use super::*;

    fn pipeline_name(name: &str) -> String {
        with_line(4, &format!("  name: {name}"))
    }

    #[test]
    fn a_pipeline_name_is_1_to_128_safe_characters() {
        let refused = |name: &str, message: &str| {
            assert_refused(&pipeline_name(name), "metadata.name", (4, 9), message);
        };
        refused(
            "\"\"",
            "expected a pipeline name of 1 to 128 characters, found an empty string",
        );
        refused(
            "truck alerts",
            &format!("pipeline name \"truck alerts\" contains ' '; {NAME_CHARS}"),
        );
        refused(
            "trück",
            &format!("pipeline name \"trück\" contains 'ü'; {NAME_CHARS}"),
        );
        refused(
            &"a".repeat(129),
            "expected a pipeline name of at most 128 characters, found 129 characters",
        );
        refused(".", ". is not allowed as a pipeline name");
        refused("\"..\"", ".. is not allowed as a pipeline name");
        refused("~", "expected a pipeline name, found null (~)");
        assert_eq!(parse_one(&pipeline_name(&"a".repeat(128))).name.len(), 128);
        assert_eq!(parse_one(&pipeline_name("A.b_c-9")).name, "A.b_c-9");
    }

    #[test]
    fn a_processor_name_follows_the_same_rules() {
        assert_refused(
            &with_line(10, "    name: geo/fence"),
            "spec.processor.name",
            (10, 11),
            &format!("processor name geo/fence contains '/'; {NAME_CHARS}"),
        );
    }

    #[test]
    fn a_topic_name_is_1_to_249_safe_characters() {
        let topic = |name: &str| with_line(7, &format!("    topics: [{name}]"));
        assert_refused(
            &topic(&"t".repeat(250)),
            "spec.input.topics[0]",
            (7, 14),
            "expected a topic name of at most 249 characters, found 250 characters",
        );
        assert_eq!(
            parse_one(&topic(&"t".repeat(249))).spec.input.topics[0].len(),
            249
        );
        assert_refused(
            &topic("\"a;b\""),
            "spec.input.topics[0]",
            (7, 14),
            &format!("topic name a;b contains ';'; {NAME_CHARS}"),
        );
    }

    #[test]
    fn topics_starting_with_two_underscores_are_internal() {
        assert_refused(
            &with_line(7, "    topics: [__consumer_offsets]"),
            "spec.input.topics[0]",
            (7, 14),
            "topic name __consumer_offsets starts with __, which is reserved for internal topics",
        );
        assert_refused(
            &with_line(20, "  onError: { deadLetter: __dlq }"),
            "spec.onError.deadLetter",
            (20, 26),
            "topic name __dlq starts with __, which is reserved for internal topics",
        );
        assert_eq!(
            parse_one(&with_line(7, "    topics: [_one]"))
                .spec
                .input
                .topics,
            ["_one"]
        );
    }
}

mod topic_lists {
    use super::*;

    fn topics(count: usize) -> String {
        let names: Vec<String> = (0..count).map(|i| format!("t{i}")).collect();
        with_line(7, &format!("    topics: [{}]", names.join(", ")))
    }

    #[test]
    fn a_pipeline_reads_1_to_64_topics() {
        assert_refused(
            &topics(0),
            "spec.input.topics",
            (7, 13),
            "expected 1 to 64 topics, found 0",
        );
        assert_refused(
            &topics(65),
            "spec.input.topics",
            (7, 13),
            "expected 1 to 64 topics, found 65",
        );
        assert_eq!(parse_one(&topics(64)).spec.input.topics.len(), 64);
    }

    #[test]
    fn an_input_topic_is_listed_once() {
        assert_refused(
            &with_line(7, "    topics: [a, b, a]"),
            "spec.input.topics[2]",
            (7, 20),
            "a is listed twice; it is already at spec.input.topics[0] (line 7, column 14)",
        );
    }

    #[test]
    fn a_pipeline_writes_1_to_64_outputs() {
        let none = VALID.replace(
            "  outputs:\n    - topic: truck_alerts\n      partitions: 10\n",
            "  outputs: []\n",
        );
        assert_refused(
            &none,
            "spec.outputs",
            (13, 12),
            "expected 1 to 64 outputs, found 0",
        );
        let many: String = (0..65).map(|i| format!("    - topic: o{i}\n")).collect();
        let many = VALID.replace("    - topic: truck_alerts\n      partitions: 10\n", &many);
        assert_refused(
            &many,
            "spec.outputs",
            (14, 5),
            "expected 1 to 64 outputs, found 65",
        );
    }

    #[test]
    fn an_output_topic_is_listed_once() {
        assert_refused(
            &with_line(15, "      partitions: 10\n    - topic: truck_alerts"),
            "spec.outputs[1].topic",
            (16, 14),
            "truck_alerts is listed twice; it is already at spec.outputs[0].topic \
             (line 14, column 14)",
        );
    }

    #[test]
    fn a_pipeline_cannot_write_to_a_topic_it_reads() {
        assert_refused(
            &with_line(14, "    - topic: truck_gps"),
            "spec.outputs[0].topic",
            (14, 14),
            "truck_gps is also an input topic; a pipeline cannot write to a topic it reads",
        );
    }

    #[test]
    fn the_dead_letter_topic_is_neither_an_input_nor_an_output() {
        assert_refused(
            &with_line(20, "  onError: { deadLetter: truck_gps }"),
            "spec.onError.deadLetter",
            (20, 26),
            "truck_gps is also an input topic; the dead-letter topic must differ from \
             every input and output topic",
        );
        assert_refused(
            &with_line(20, "  onError: { deadLetter: truck_alerts }"),
            "spec.onError.deadLetter",
            (20, 26),
            "truck_alerts is also an output topic; the dead-letter topic must differ from \
             every input and output topic",
        );
    }
}

mod params {
    use super::*;

    fn params(line: &str) -> String {
        with_line(12, &format!("    params: {{ {line} }}"))
    }

    #[test]
    fn a_param_value_is_a_scalar() {
        let refused = |value: &str, found: &str| {
            assert_refused(
                &params(&format!("min_lat: {value}")),
                "spec.processor.params.min_lat",
                (12, 24),
                &format!("expected a string, number or boolean, found {found}"),
            );
        };
        refused("{ deg: 48 }", "a mapping");
        refused("[48, 30]", "a list");
        refused("~", "null (~)");
        refused("null", "null");
    }

    #[test]
    fn a_param_name_is_1_to_256_bytes() {
        assert_refused(
            &params("\"\": x"),
            "spec.processor.params",
            (12, 15),
            "a param name must not be empty",
        );
        let long = "n".repeat(257);
        assert_refused(
            &params(&format!("{long}: x")),
            "spec.processor.params",
            (12, 15),
            &format!(
                "param name {}… is 257 bytes long; at most 256 are allowed",
                "n".repeat(60)
            ),
        );
        let longest = "n".repeat(256);
        // An error in its value names the param, cut short.
        assert_refused(
            &params(&format!("{longest}: []")),
            &format!("spec.processor.params[\"{}…\"]", "n".repeat(60)),
            (12, 273),
            "expected a string, number or boolean, found an empty list",
        );
        assert!(
            parse_one(&params(&format!("{longest}: x")))
                .spec
                .processor
                .params
                .contains_key(&longest)
        );
    }

    #[test]
    fn a_param_value_is_at_most_64_kib() {
        let value = |len: usize| params(&format!("big: {}", "v".repeat(len)));
        assert_refused(
            &value(65_537),
            "spec.processor.params.big",
            (12, 20),
            "expected a value of at most 65536 bytes, found 65537 bytes",
        );
        assert_eq!(
            parse_one(&value(65_536)).spec.processor.params["big"].len(),
            65_536
        );
    }

    #[test]
    fn a_processor_takes_at_most_256_params() {
        let many = |count: usize| {
            let entries: Vec<String> = (0..count).map(|i| format!("p{i}: {i}")).collect();
            params(&entries.join(", "))
        };
        assert_refused(
            &many(257),
            "spec.processor.params",
            (12, 13),
            "expected at most 256 params, found 257",
        );
        assert_eq!(parse_one(&many(256)).spec.processor.params.len(), 256);
    }

    #[test]
    fn a_param_name_that_is_not_a_word_is_quoted_in_the_path() {
        let paths: Vec<String> = errors_of(&params("\"min lat\": [1], a.b: {}"))
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            paths,
            [
                "spec.processor.params[\"min lat\"]",
                "spec.processor.params[\"a.b\"]"
            ]
        );
    }

    #[test]
    fn a_param_is_given_once() {
        assert_refused(
            &params("a: 1, a: 2"),
            "spec.processor.params",
            (12, 21),
            "duplicate param a; it is already given at line 12, column 15",
        );
    }
}

mod reporting {
    use super::*;

    #[test]
    fn each_error_is_one_line_naming_document_path_and_position() {
        let text =
            with_line(16, "  delivery: exactly_once").replace("parallelism: 4", "parallelism: 0");
        let errors = parse(&text).err().map(|e| e.to_string());
        assert_eq!(
            errors.as_deref(),
            Some(
                "document 1, spec.delivery (line 16, column 13): expected at-most-once, \
                 at-least-once or exactly-once, found exactly_once\n\
                 document 1, spec.parallelism (line 17, column 16): expected an integer \
                 from 1 to 256, found 0"
            )
        );
        let errors = parse(&with_line(1, "")).err().map(|e| e.to_string());
        assert_eq!(
            errors.as_deref(),
            Some("document 1 (line 1, column 1): missing required field apiVersion")
        );
    }

    #[test]
    fn independent_errors_are_all_reported_in_file_order() {
        let text = with_line(4, "  name: bad name")
            .replace("startFrom: earliest", "startFrom: first")
            .replace("maxWaitMs: 50", "maxWaitMs: -5")
            .replace("  delivery: exactly-once\n", "");
        let found: Vec<(String, usize)> = errors_of(&text)
            .into_iter()
            .map(|e| (e.path, e.line))
            .collect();
        let expected = [
            ("metadata.name", 4),
            ("spec", 6),
            ("spec.input.startFrom", 8),
            ("spec.batch.maxWaitMs", 17),
        ];
        let expected: Vec<(String, usize)> =
            expected.iter().map(|&(p, l)| (p.to_owned(), l)).collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn one_mistake_gives_one_error() {
        // input is not a mapping: no "missing topics", and no input/output clash check.
        assert_refused(
            &with_line(6, "  input: 5")
                .replace("    topics: [truck_gps]\n    startFrom: earliest\n", ""),
            "spec.input",
            (6, 10),
            "expected a mapping, found 5",
        );
        // A bad output topic does not also count as a duplicate or a clash.
        assert_refused(
            &with_line(14, "    - topic: \"truck gps\""),
            "spec.outputs[0].topic",
            (14, 14),
            &format!("topic name \"truck gps\" contains ' '; {NAME_CHARS}"),
        );
    }

    #[test]
    fn an_error_in_the_second_document_names_it_and_its_line_in_the_file() {
        let second = with_line(18, "  batch: { maxRecord: 256, maxWaitMs: 50 }")
            .replace("truck-alerts", "second");
        // VALID's 20 lines, the separator, then the second document from line 22.
        let file = format!("{VALID}---\n{second}");
        assert_refused_in(
            &file,
            2,
            "spec.batch",
            (39, 12),
            "unknown field maxRecord; expected maxRecords or maxWaitMs",
        );
    }

    #[test]
    fn errors_in_several_documents_are_reported_with_their_document() {
        let file = format!(
            "{}---\n---\n{}",
            with_line(2, "kind: Job"),
            with_line(1, "apiVersion: v1")
        );
        let found: Vec<(usize, String, usize)> = errors_of(&file)
            .into_iter()
            .map(|e| (e.document, e.path, e.line))
            .collect();
        assert_eq!(
            found,
            [(1, "kind".to_owned(), 2), (3, "apiVersion".to_owned(), 23)]
        );
    }

    #[test]
    fn a_yaml_syntax_error_names_its_document_and_position() {
        let errors = errors_of(&with_line(3, "metadata: { name: x"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        let error = &errors[0];
        assert_eq!((error.document, error.path.as_str()), (1, ""));
        assert_eq!((error.line, error.column), (4, 7));
        assert!(
            error.message.starts_with("not valid YAML: "),
            "{}",
            error.message
        );

        let file = format!("{VALID}---\nkind: [\n");
        let errors = errors_of(&file);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!((errors[0].document, errors[0].line), (2, 23));
    }

    #[test]
    fn documents_before_a_syntax_error_are_still_checked() {
        let file = format!("{}---\na: b: c\n", with_line(2, "kind: Job"));
        let found: Vec<(usize, String)> = errors_of(&file)
            .into_iter()
            .map(|e| (e.document, e.path))
            .collect();
        assert_eq!(found, [(1, "kind".to_owned()), (2, String::new())]);
    }
}

mod state {
    use super::*;

    #[test]
    fn state_needs_exactly_once_delivery() {
        assert_refused(
            &with_line(16, "  delivery: at-least-once\n  state: { enabled: true }"),
            "spec.state",
            (17, 10),
            "a pipeline with state needs `delivery: exactly-once`: its state is restored \
             exactly only with the outputs it goes with",
        );
    }

    #[test]
    fn state_needs_one_input_topic() {
        assert_refused(
            &with_line(7, "    topics: [a, b]")
                .replace("  onError:", "  state: { enabled: true }\n  onError:"),
            "spec.state",
            (20, 10),
            "a pipeline with state reads exactly one input topic, not 2: state is kept per \
             input partition (co-partition the inputs into one topic first)",
        );
    }

    #[test]
    fn enabled_is_required_and_a_boolean() {
        assert_refused(
            &with_line(20, "  state: { enabled: yes }"),
            "spec.state.enabled",
            (20, 21),
            "expected true or false, found yes",
        );
        assert_refused(
            &with_line(20, "  state: {}"),
            "spec.state",
            (20, 10),
            "missing required field enabled",
        );
    }

    #[test]
    fn event_time_needs_state() {
        assert_refused(
            &with_line(20, "  eventTime: { allowedLatenessMs: 10 }"),
            "spec.eventTime",
            (20, 14),
            "spec.eventTime needs `state: { enabled: true }`: timers and the watermark are kept \
             in the state",
        );
    }

    #[test]
    fn the_state_limit_is_bounded() {
        assert_refused(
            &with_line(19, "  limits: { stateMiB: 0 }"),
            "spec.limits.stateMiB",
            (19, 23),
            "expected an integer from 1 to 65536, found 0",
        );
    }
}
