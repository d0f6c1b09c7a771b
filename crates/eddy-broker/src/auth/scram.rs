//! SCRAM-SHA-256 credentials (RFC 5802 and 7677), in the form Kafka's
//! SASL/SCRAM stores them, so that a Kafka listener can check the same
//! users: a random salt, PBKDF2-HMAC-SHA-256 of the password, and the
//! stored and server keys derived from it. The password is not kept.
//!
//! [`Exchange`] is the server's side of one SCRAM-SHA-256 sign-in, as
//! Kafka's SASL/SCRAM runs it: the client's first message is answered
//! with a nonce, the salt and the iterations; the client's final message
//! carries a proof that it knows the password, answered with the server's
//! own proof that it knows the credential.

use base64::Engine;
use eddy_meta::ScramCredential;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// PBKDF2 iterations of a new credential (Kafka's default).
pub const ITERATIONS: u32 = eddy_meta::SCRAM_ITERATIONS_MIN;
/// Bytes of salt of a new credential.
const SALT_BYTES: usize = 24;
/// Shortest password accepted.
pub const PASSWORD_LEN_MIN: usize = 8;

/// A new credential for `password`, with a fresh random salt.
pub fn credential(password: &str) -> Result<ScramCredential, String> {
    if password.chars().count() < PASSWORD_LEN_MIN {
        return Err(format!(
            "a password needs at least {PASSWORD_LEN_MIN} characters"
        ));
    }
    let mut salt = vec![0u8; SALT_BYTES];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness for a salt: {e}"))?;
    let salted = salted_password(password, &salt, ITERATIONS);
    Ok(ScramCredential {
        stored_key: stored_key(&salted),
        server_key: hmac(&salted, b"Server Key"),
        salt,
        iterations: ITERATIONS,
    })
}

/// Whether `password` is the one `credential` was made from (in constant
/// time over the derived keys). Costs `iterations` HMAC rounds: call it
/// off the async workers.
pub fn verify(password: &str, credential: &ScramCredential) -> bool {
    let salted = salted_password(password, &credential.salt, credential.iterations);
    stored_key(&salted).ct_eq(&credential.stored_key).into()
}

fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
    out
}

fn stored_key(salted: &[u8; 32]) -> [u8; 32] {
    Sha256::digest(hmac(salted, b"Client Key")).into()
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The server's side of one SCRAM-SHA-256 exchange (RFC 5802), after the
/// client's first message.
pub struct Exchange {
    user: String,
    /// `None` for a user that does not exist: the exchange runs on with a
    /// made-up salt and fails at the proof, so that the answers do not
    /// tell which names exist.
    credential: Option<ScramCredential>,
    gs2_header: String,
    nonce: String,
    client_first_bare: String,
    server_first: String,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Bytes of server nonce added to the client's.
const NONCE_BYTES: usize = 18;

impl Exchange {
    /// Reads the client's first message (`n,,n=USER,r=NONCE`) and returns
    /// the exchange and the server's first message. `credential` looks up
    /// a user's credential.
    pub fn start(
        client_first: &str,
        credential: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<(Exchange, String), String> {
        let bad = |why: &str| format!("malformed SCRAM client-first message: {why}");
        // gs2 header: channel binding flag, optional authzid, then the bare message.
        let (flag, rest) = client_first
            .split_once(',')
            .ok_or_else(|| bad("no gs2 header"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => {
                return Err(
                    "SCRAM channel binding is not supported: use SCRAM-SHA-256 without it".into(),
                );
            }
            _ => return Err(bad("the gs2 header starts with n, y or p=")),
        }
        let (authzid, bare) = rest.split_once(',').ok_or_else(|| bad("no gs2 header"))?;
        let gs2_header = format!("{flag},{authzid},");
        let mut user = None;
        let mut client_nonce = None;
        for attribute in bare.split(',') {
            match attribute.split_once('=') {
                Some(("n", v)) => {
                    user = Some(unescape(v).ok_or_else(|| bad("bad user name escape"))?)
                }
                Some(("r", v)) if !v.is_empty() => client_nonce = Some(v.to_string()),
                Some(("m", _)) => return Err(bad("mandatory extensions are not supported")),
                Some(("tokenauth", _)) => {
                    return Err("delegation tokens are not supported over SCRAM: sign in with a user's password".into());
                }
                _ => {}
            }
        }
        let user = user.ok_or_else(|| bad("no n=USER"))?;
        let client_nonce = client_nonce.ok_or_else(|| bad("no r=NONCE"))?;
        if let Some(authz) = authzid.strip_prefix("a=")
            && unescape(authz).as_deref() != Some(user.as_str())
        {
            return Err(format!("user {user:?} may not act as another user"));
        }
        let mut random = [0u8; NONCE_BYTES];
        getrandom::fill(&mut random).map_err(|e| format!("no randomness for a nonce: {e}"))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let nonce = format!("{client_nonce}{}", hex(&random));
        let credential = credential(&user);
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => (made_up_salt(&user), ITERATIONS),
        };
        let server_first = format!("r={nonce},s={},i={iterations}", b64.encode(salt));
        Ok((
            Exchange {
                user,
                credential,
                gs2_header,
                nonce,
                client_first_bare: bare.to_string(),
                server_first: server_first.clone(),
            },
            server_first,
        ))
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// Checks the client's final message (`c=…,r=…,p=PROOF`); on success,
    /// the server's final message (`v=SIGNATURE`).
    pub fn finish(self, client_final: &str) -> Result<String, String> {
        let bad = |why: &str| format!("malformed SCRAM client-final message: {why}");
        let b64 = base64::engine::general_purpose::STANDARD;
        let (without_proof, proof) = client_final
            .rsplit_once(",p=")
            .ok_or_else(|| bad("no p=PROOF"))?;
        let proof = b64
            .decode(proof)
            .map_err(|_| bad("the proof is not base64"))?;
        let mut binding = None;
        let mut nonce = None;
        for attribute in without_proof.split(',') {
            match attribute.split_once('=') {
                Some(("c", v)) => binding = Some(v),
                Some(("r", v)) => nonce = Some(v),
                _ => {}
            }
        }
        let binding = binding
            .and_then(|c| b64.decode(c).ok())
            .ok_or_else(|| bad("no c=BINDING"))?;
        if binding != self.gs2_header.as_bytes() {
            return Err(bad("the channel binding differs from the first message's"));
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(bad("the nonce differs from the server's"));
        }
        let refused = || {
            format!(
                "user {:?} and this password do not match a user of this cluster",
                self.user
            )
        };
        let Some(credential) = &self.credential else {
            return Err(refused());
        };
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let signature = hmac(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(refused());
        }
        let client_key: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
        let stored: [u8; 32] = Sha256::digest(&client_key).into();
        if !bool::from(stored.ct_eq(&credential.stored_key)) {
            return Err(refused());
        }
        let server_signature = hmac(&credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", b64.encode(server_signature)))
    }
}

/// A SCRAM name: `=2C` is `,` and `=3D` is `=`; any other `=` is an error.
fn unescape(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3)?;
        out.push(match code {
            "2C" => ',',
            "3D" => '=',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// The same salt each time for a name that is no user's, which outsiders
/// cannot tell from a real one (keyed with this process's random key).
fn made_up_salt(user: &str) -> Vec<u8> {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        // Without randomness the key is zeros: the salt still varies by name.
        let _ = getrandom::fill(&mut key);
        key
    });
    hmac(key, user.as_bytes())[..SALT_BYTES].to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_right_password_verifies_and_others_do_not() {
        let c = credential("correct horse").unwrap();
        assert!(verify("correct horse", &c));
        assert!(!verify("correct horsE", &c));
        assert!(!verify("", &c));
        assert_eq!(c.iterations, 4096);
        let again = credential("correct horse").unwrap();
        assert_ne!(c.salt, again.salt, "every credential has its own salt");
        assert_ne!(c.stored_key, again.stored_key);
    }

    /// A client's side, as RFC 5802 computes it.
    fn client_final(password: &str, client_first_bare: &str, server_first: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let attrs: std::collections::HashMap<&str, &str> = server_first
            .split(',')
            .filter_map(|a| a.split_once('='))
            .collect();
        let salt = b64.decode(attrs["s"]).unwrap();
        let salted = salted_password(password, &salt, attrs["i"].parse().unwrap());
        let client_key = hmac(&salted, b"Client Key");
        let without_proof = format!("c=biws,r={}", attrs["r"]);
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac(&Sha256::digest(client_key), auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(a, b)| a ^ b)
            .collect();
        format!("{without_proof},p={}", b64.encode(proof))
    }

    #[test]
    fn a_scram_exchange_signs_in_with_the_password_and_only_with_it() {
        let c = credential("correct horse").unwrap();
        let lookup = |user: &str| (user == "alice").then(|| c.clone());
        let (exchange, server_first) = Exchange::start("n,,n=alice,r=abc123", lookup).unwrap();
        assert!(server_first.starts_with("r=abc123"));
        let last = client_final("correct horse", "n=alice,r=abc123", &server_first);
        let server_final = exchange.finish(&last).unwrap();
        assert!(server_final.starts_with("v="));

        let (exchange, server_first) = Exchange::start("n,,n=alice,r=abc123", lookup).unwrap();
        let wrong = client_final("correct horsE", "n=alice,r=abc123", &server_first);
        assert!(
            exchange
                .finish(&wrong)
                .unwrap_err()
                .contains("do not match")
        );

        // An unknown user gets a salt too, and fails only at the proof.
        let (exchange, server_first) = Exchange::start("n,,n=mallory,r=xyz", lookup).unwrap();
        assert!(server_first.contains(",s=") && server_first.contains(",i=4096"));
        let guess = client_final("correct horse", "n=mallory,r=xyz", &server_first);
        assert!(
            exchange
                .finish(&guess)
                .unwrap_err()
                .contains("do not match")
        );

        // A replayed final message fails against a new server nonce.
        let (exchange, _) = Exchange::start("n,,n=alice,r=abc123", lookup).unwrap();
        assert!(exchange.finish(&last).unwrap_err().contains("nonce"));
        assert!(Exchange::start("p=tls-unique,,n=alice,r=a", lookup).is_err());
        assert!(Exchange::start("n,a=bob,n=alice,r=a", lookup).is_err());
        assert_eq!(unescape("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(unescape("a=2"), None);
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(credential("short").unwrap_err().contains("at least 8"));
    }

    /// RFC 7677's example: user "user", password "pencil", this salt and
    /// 4096 iterations give these keys (the server signature in the RFC
    /// is computed from this server key).
    #[test]
    fn keys_match_the_rfc_7677_example() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = salted_password("pencil", &salt, 4096);
        let client_key = hmac(&salted, b"Client Key");
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        // ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage)
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let signature = hmac(&stored, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(a, b)| a ^ b)
            .collect();
        assert_eq!(
            b64.encode(proof),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let server_signature = hmac(&hmac(&salted, b"Server Key"), auth_message.as_bytes());
        assert_eq!(
            b64.encode(server_signature),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }
}
