//! Users, API tokens and ACLs: the `Security` service.

use eddy_proto::v1::{
    AclEntry, AclsRequest, ChangePasswordRequest, CreateTokenRequest, CreateTokenResponse,
    CreateUserRequest, DeleteUserRequest, ListAclsRequest, ListQuotasRequest, ListTokensRequest,
    ListUsersRequest, QuotaEntry, RevokeTokenRequest, TokenSummary, UserSummary, WhoAmIRequest,
    WhoAmIResponse, security_client::SecurityClient,
};

use crate::client::Client;
use crate::error::Result;

/// The cluster's users, tokens and ACLs over a [`Client`].
#[derive(Debug, Clone)]
pub struct Security {
    client: Client,
}

macro_rules! call {
    ($self:ident, $method:ident, $req:expr) => {{
        let req = $req;
        $self
            .client
            .on_any_broker(|c| {
                let req = req.clone();
                async move { SecurityClient::new(c).$method(req).await }
            })
            .await
    }};
}

impl Security {
    pub fn new(client: Client) -> Security {
        Security { client }
    }

    /// Creates a user; the password travels to the broker (use TLS) and
    /// is kept only as a SCRAM-SHA-256 credential.
    pub async fn create_user(&self, name: &str, password: &str) -> Result<UserSummary> {
        call!(
            self,
            create_user,
            CreateUserRequest {
                name: name.to_string(),
                password: password.to_string(),
            }
        )
    }

    pub async fn change_password(&self, name: &str, password: &str) -> Result<UserSummary> {
        call!(
            self,
            change_password,
            ChangePasswordRequest {
                name: name.to_string(),
                password: password.to_string(),
            }
        )
    }

    /// Deletes a user; returns how many of its tokens were revoked.
    pub async fn delete_user(&self, name: &str) -> Result<u32> {
        let r = call!(
            self,
            delete_user,
            DeleteUserRequest {
                name: name.to_string()
            }
        )?;
        Ok(r.tokens_revoked)
    }

    pub async fn list_users(&self) -> Result<Vec<UserSummary>> {
        Ok(call!(self, list_users, ListUsersRequest {})?.users)
    }

    /// Creates a token for `user`, expiring after `expires_in_ms` (0:
    /// never). The response's secret is shown this once.
    pub async fn create_token(
        &self,
        user: &str,
        expires_in_ms: u64,
    ) -> Result<CreateTokenResponse> {
        call!(
            self,
            create_token,
            CreateTokenRequest {
                user: user.to_string(),
                expires_in_ms,
            }
        )
    }

    pub async fn list_tokens(&self, user: &str) -> Result<Vec<TokenSummary>> {
        Ok(call!(
            self,
            list_tokens,
            ListTokensRequest {
                user: user.to_string()
            }
        )?
        .tokens)
    }

    pub async fn revoke_token(&self, id: &str) -> Result<()> {
        call!(
            self,
            revoke_token,
            RevokeTokenRequest { id: id.to_string() }
        )?;
        Ok(())
    }

    pub async fn add_acls(&self, acls: Vec<AclEntry>) -> Result<Vec<AclEntry>> {
        Ok(call!(self, add_acls, AclsRequest { acls })?.acls)
    }

    pub async fn remove_acls(&self, acls: Vec<AclEntry>) -> Result<Vec<AclEntry>> {
        Ok(call!(self, remove_acls, AclsRequest { acls })?.acls)
    }

    /// ACLs, of one principal and one resource type when given (empty: all).
    pub async fn list_acls(&self, principal: &str, resource_type: &str) -> Result<Vec<AclEntry>> {
        Ok(call!(
            self,
            list_acls,
            ListAclsRequest {
                principal: principal.to_string(),
                resource_type: resource_type.to_string(),
            }
        )?
        .acls)
    }

    /// Sets a principal's quota (every limit 0: removes it).
    pub async fn set_quota(&self, entry: QuotaEntry) -> Result<QuotaEntry> {
        call!(self, set_quota, entry)
    }

    pub async fn list_quotas(&self) -> Result<Vec<QuotaEntry>> {
        Ok(call!(self, list_quotas, ListQuotasRequest {})?.quotas)
    }

    /// Who the broker takes this client to be.
    pub async fn who_am_i(&self) -> Result<WhoAmIResponse> {
        call!(self, who_am_i, WhoAmIRequest {})
    }
}
