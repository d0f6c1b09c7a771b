//! Every RPC of every service, called without credentials, without the
//! right, and with exactly the right its rule in `eddy_broker::auth::rules`
//! names: a new RPC cannot ship unchecked, because it has no rule (and is
//! refused) until one is written, and then this proves the rule holds.

use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use bytes::{Buf, BufMut, Bytes};
use eddy_broker::auth::rules::{RULES, Rule};
use eddy_meta::{Operation, ResourceType};
use eddy_tests::secured::{ADMIN, PASSWORD, SecuredBroker};
use prost::Message;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

/// Messages as raw bytes: an empty one decodes as every field's default.
#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// How a call ended: its status code (`Ok` if a message came back) and
/// what came back.
#[derive(Debug)]
struct Outcome {
    code: Code,
    message: String,
    body: Bytes,
}

/// Calls `path` with one empty message, as any of the four kinds of RPC
/// (they are the same on the wire), reading at most the first answer.
async fn call(channel: &Channel, path: &str, authorization: Option<&str>) -> Outcome {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(tokio_stream::iter(vec![Bytes::new()]));
    if let Some(a) = authorization {
        request
            .metadata_mut()
            .insert("authorization", a.parse().unwrap());
    }
    let uri_path = http::uri::PathAndQuery::from_str(path).unwrap();
    let answer = async {
        let mut stream = grpc.streaming(request, uri_path, Raw).await?.into_inner();
        Ok::<_, tonic::Status>(stream.message().await?.unwrap_or_default())
    };
    match tokio::time::timeout(Duration::from_secs(20), answer).await {
        Ok(Ok(body)) => Outcome {
            code: Code::Ok,
            message: String::new(),
            body,
        },
        Ok(Err(status)) => Outcome {
            code: status.code(),
            message: status.message().to_string(),
            body: Bytes::new(),
        },
        Err(_) => panic!("{path:?} did not answer within 20 s"),
    }
}

fn basic(user: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("Basic {}", b64.encode(format!("{user}:{PASSWORD}")))
}

/// Every method in Eddy's protos, health and reflection included.
fn every_rpc() -> Vec<String> {
    let mut paths = Vec::new();
    let sets: [&[u8]; 2] = [
        eddy_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ];
    for set in sets {
        let set = prost_types::FileDescriptorSet::decode(set).unwrap();
        for f in &set.file {
            for s in &f.service {
                for m in &s.method {
                    paths.push(format!("/{}.{}/{}", f.package(), s.name(), m.name()));
                }
            }
        }
    }
    paths.push("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo".into());
    paths.push("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo".into());
    paths
}

/// The ACL arguments that grant exactly what `rule` asks, if any.
fn grant_for(rule: Rule) -> Option<Vec<String>> {
    let args = |resource: ResourceType, op: Operation| {
        let mut a = vec!["--operation".to_string(), op.to_string()];
        match resource {
            ResourceType::Cluster => a.push("--cluster".into()),
            other => {
                a.push(format!("--{other}"));
                a.push("*".into());
            }
        }
        a
    };
    match rule {
        Rule::Named(r, op) | Rule::AnyOf(r, op) => Some(args(r, op)),
        Rule::OnCluster(op) | Rule::SelfOr(op) => Some(args(ResourceType::Cluster, op)),
        Rule::Open | Rule::Authenticated | Rule::Listed(_) | Rule::Brokers => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_is_refused_without_its_right_and_served_with_it() {
    let s = SecuredBroker::start(&[]);
    for user in ["nobody", "granted"] {
        s.create_user(user);
    }
    s.as_user_ok(ADMIN, &["topic", "create", "marker-topic"], b"");
    let channel = Channel::from_shared(format!("http://{}", s.broker.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let secret = std::fs::read_to_string(&s.secret).unwrap();
    let broker = format!("Eddy-Broker 1:{}", secret.trim());

    let rpcs = every_rpc();
    assert!(rpcs.len() > 50, "found only {} RPCs", rpcs.len());
    let mut failures = Vec::new();
    for path in &rpcs {
        let Some(&(_, rule)) = RULES.iter().find(|(p, _)| p == path) else {
            failures.push(format!("{path}: no rule"));
            continue;
        };
        let anonymous = call(&channel, path, None).await;
        let nobody = call(&channel, path, Some(&basic("nobody"))).await;
        let expect = |who: &str, o: &Outcome, code: Code, failures: &mut Vec<String>| {
            if o.code != code {
                failures.push(format!(
                    "{path} ({rule:?}) as {who}: {:?} {:?}, expected {code:?}",
                    o.code, o.message
                ));
            }
        };
        match rule {
            Rule::Open => {
                for o in [&anonymous, &nobody] {
                    if matches!(o.code, Code::Unauthenticated | Code::PermissionDenied) {
                        failures.push(format!("{path} is open but was refused: {o:?}"));
                    }
                }
                continue;
            }
            _ => expect(
                "anonymous",
                &anonymous,
                Code::Unauthenticated,
                &mut failures,
            ),
        }
        match rule {
            Rule::Authenticated => {
                if matches!(nobody.code, Code::Unauthenticated | Code::PermissionDenied) {
                    failures.push(format!("{path}: any user may call it, but: {nobody:?}"));
                }
            }
            Rule::Listed(_) | Rule::SelfOr(Operation::Describe) => {
                if matches!(nobody.code, Code::Unauthenticated | Code::PermissionDenied) {
                    failures.push(format!(
                        "{path}: a list is filtered, not refused: {nobody:?}"
                    ));
                }
                if nobody.body.windows(12).any(|w| w == b"marker-topic") {
                    failures.push(format!("{path} shows a topic the caller may not describe"));
                }
            }
            _ => expect(
                "a user without ACLs",
                &nobody,
                Code::PermissionDenied,
                &mut failures,
            ),
        }
        // With exactly the right the rule names, the call is let through
        // (it may still fail: an empty request names nothing real).
        let allowed = match (rule, grant_for(rule)) {
            (Rule::Brokers, _) => call(&channel, path, Some(&broker)).await,
            (_, Some(grant)) => {
                let grant: Vec<&str> = grant.iter().map(String::as_str).collect();
                let mut add = vec!["--allow", "User:granted"];
                add.extend(&grant);
                s.grant(&add);
                let o = call(&channel, path, Some(&basic("granted"))).await;
                let mut remove = vec!["acl", "remove", "--allow", "User:granted"];
                remove.extend(&grant);
                s.as_user_ok(ADMIN, &remove, b"");
                o
            }
            (Rule::Listed(_), None) => {
                s.grant(&[
                    "--allow",
                    "User:granted",
                    "--operation",
                    "describe",
                    "--topic",
                    "*",
                ]);
                let o = call(&channel, path, Some(&basic("granted"))).await;
                if path.ends_with("/Metadata") || path.ends_with("/ListTopics") {
                    assert!(
                        o.body.windows(12).any(|w| w == b"marker-topic"),
                        "{path} shows a topic the caller may describe"
                    );
                }
                s.as_user_ok(
                    ADMIN,
                    &[
                        "acl",
                        "remove",
                        "--allow",
                        "User:granted",
                        "--operation",
                        "describe",
                        "--topic",
                        "*",
                    ],
                    b"",
                );
                o
            }
            (_, None) => nobody,
        };
        if matches!(allowed.code, Code::Unauthenticated | Code::PermissionDenied) {
            failures.push(format!(
                "{path} ({rule:?}) was refused with its right: {allowed:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A method the table does not know is refused once authentication is
/// required, whoever calls it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rpc_without_a_rule_is_refused() {
    let s = SecuredBroker::start(&[]);
    let channel = Channel::from_shared(format!("http://{}", s.broker.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let o = call(&channel, "/eddy.v1.Admin/Unheard", Some(&basic(ADMIN))).await;
    assert_eq!(o.code, Code::PermissionDenied, "{o:?}");
    assert!(o.message.contains("no authorization rule"), "{o:?}");
}
