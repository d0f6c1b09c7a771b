//! `eddy-pipeline`: Eddy's main job — processors running between topics.
//!
//! - [`registry`]: the processor registry (uploads validated before they
//!   become visible, bytes in the internal topic `__processors`, names and
//!   versions in the metadata store) and its gRPC service.
//! - `manifest`: pipeline manifests (YAML) parsed into typed specs, with
//!   refusals that name the field and its line:column.
//! - the pipeline control service: apply, list, describe, pause, resume,
//!   delete, and what workers watch and report.
//! - the worker: joins the consumer groups of running pipelines and runs
//!   one task per input partition (fetch → process in the sandbox →
//!   produce → commit) at-most-once, at-least-once or exactly-once.
//!
//! Architecture invariant: this crate knows nothing about segment files;
//! the server side uses the broker's API, the worker only the client.

pub mod control;
pub mod error;
pub mod manifest;
pub mod node;
pub mod registry;
pub mod worker;

use std::sync::Arc;

use eddy_broker::{Broker, BrokerError, ExtensionFactory};
use eddy_proto::v1::pipelines_server::{PipelinesServer, SERVICE_NAME as PIPELINES};
use eddy_proto::v1::processors_server::{ProcessorsServer, SERVICE_NAME as PROCESSORS};
use eddy_wasm::Runtime;
use tonic::service::RoutesBuilder;

pub use error::{Error, Result};
pub use node::{Node, NodeConfig};

use self::control::{Control, PipelinesService};
use self::registry::{ProcessorsService, Registry, RegistryConfig};

/// Largest message the pipeline services take: an upload chunk (1 MiB)
/// with room to spare, or a manifest (1 MiB).
const MESSAGE_BYTES_MAX: usize = 2 << 20;

/// The processor registry and the pipeline services of one broker.
#[derive(Debug)]
struct Services {
    registry: Arc<Registry>,
    control: Arc<Control>,
    broker: Arc<Broker>,
}

impl eddy_broker::Extension for Services {
    fn add_services(&self, routes: &mut RoutesBuilder) {
        routes
            .add_service(
                ProcessorsServer::new(ProcessorsService::new(self.registry.clone()))
                    .max_decoding_message_size(MESSAGE_BYTES_MAX),
            )
            .add_service(
                PipelinesServer::new(PipelinesService::new(
                    self.control.clone(),
                    self.broker.clone(),
                ))
                .max_decoding_message_size(MESSAGE_BYTES_MAX),
            );
    }

    fn service_names(&self) -> Vec<&'static str> {
        vec![PROCESSORS, PIPELINES]
    }
}

/// What a broker needs to serve processors and pipelines: pass it to
/// [`eddy_broker::start_with`]. `runtime` validates uploads (and, shared
/// with the broker's own worker, compiles each version once).
pub fn extension(runtime: Runtime, config: RegistryConfig) -> ExtensionFactory {
    Box::new(move |broker: &Arc<Broker>| {
        if runtime.config().component_bytes_max < config.processor_bytes_max {
            return Err(BrokerError::InvalidRequest(format!(
                "the processor runtime accepts components up to {} bytes, less than the registry's processor_bytes_max of {}",
                runtime.config().component_bytes_max,
                config.processor_bytes_max
            )));
        }
        let control = Arc::new(Control::new(broker.clone()));
        tokio::spawn(control.clone().watch_owners());
        let services = Services {
            registry: Arc::new(Registry::new(broker.clone(), runtime, config)),
            control,
            broker: broker.clone(),
        };
        Ok(Box::new(services) as Box<dyn eddy_broker::Extension>)
    })
}
