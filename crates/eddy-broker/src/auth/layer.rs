//! The layer in front of every service: authenticates each call, checks
//! what its [`Rule`] says without reading the request, and gives the
//! handler the [`Caller`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use eddy_meta::{CLUSTER_RESOURCE, ResourceType};
use eddy_proto::link::AUTHORIZATION;
use tonic::Status;

use super::{Authorizer, Caller, Principal, Rule, denied, rules};
use crate::server::Connection;

#[derive(Debug, Clone)]
pub(crate) struct AuthLayer {
    pub authorizer: Arc<Authorizer>,
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            authorizer: self.authorizer.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Auth<S> {
    inner: S,
    authorizer: Arc<Authorizer>,
}

impl<S, B> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The ready service is the one to call; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let authorizer = self.authorizer.clone();
        Box::pin(async move {
            let path = req.uri().path().to_string();
            let connection = req.extensions().get::<Connection>().cloned();
            let peer = connection.as_ref().map(|c| c.peer);
            let connection_id = connection.as_ref().map(|c| c.id);
            let certificate_name = connection.and_then(|c| c.certificate_name);
            let rule = rules::for_path(&path);
            let principal = if rule == Some(Rule::Open) {
                Principal::Anonymous
            } else {
                let header = req
                    .headers()
                    .get(AUTHORIZATION)
                    .map(|v| v.as_bytes().to_vec());
                let certificate = certificate_name.as_deref();
                match authorizer
                    .authenticate(header.as_deref(), certificate, peer)
                    .await
                {
                    Ok(p) => p,
                    Err(status) => return Ok(status.into_http()),
                }
            };
            if let Err(status) = admit(&authorizer, &principal, rule, &path, peer) {
                return Ok(status.into_http());
            }
            if let Some(id) = connection_id
                && let Err(status) = authorizer.admit_connection(&principal, id)
            {
                tracing::warn!(target: "eddy::audit", %principal, peer = ?peer, "{}", status.message());
                return Ok(status.into_http());
            }
            req.extensions_mut().insert(Caller {
                principal,
                rule: rule.unwrap_or(Rule::Authenticated),
                peer,
                authorizer,
            });
            inner.call(req).await
        })
    }
}

/// What the rule decides before the request is read.
fn admit(
    authorizer: &Authorizer,
    principal: &Principal,
    rule: Option<Rule>,
    path: &str,
    peer: Option<SocketAddr>,
) -> Result<(), Status> {
    let required = authorizer.config().required;
    let refusal = match rule {
        None if required => Some(Status::permission_denied(format!(
            "{path} has no authorization rule, so it is refused"
        ))),
        None => None,
        Some(Rule::Brokers) if required && !matches!(principal, Principal::Broker(_)) => {
            Some(Status::permission_denied(format!(
                "{principal} may not call {path}: only the brokers of this cluster may (they prove it with the cluster secret)"
            )))
        }
        Some(Rule::OnCluster(op))
            if !authorizer.allows(principal, ResourceType::Cluster, CLUSTER_RESOURCE, op) =>
        {
            Some(denied(
                principal,
                ResourceType::Cluster,
                CLUSTER_RESOURCE,
                op,
            ))
        }
        Some(Rule::AnyOf(resource, op)) if !authorizer.allows_some(principal, resource, op) => {
            Some(Status::permission_denied(format!(
                "{principal} may not call {path}: it needs {op} on some {resource}, and no ACL allows that"
            )))
        }
        _ => None,
    };
    match refusal {
        Some(status) => {
            tracing::warn!(target: "eddy::audit", %principal, peer = ?peer, rpc = path, "denied");
            Err(status)
        }
        None => Ok(()),
    }
}
