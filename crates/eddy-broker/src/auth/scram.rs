//! SCRAM-SHA-256 credentials (RFC 5802 and 7677), in the form Kafka's
//! SASL/SCRAM stores them, so that a Kafka listener can check the same
//! users: a random salt, PBKDF2-HMAC-SHA-256 of the password, and the
//! stored and server keys derived from it. The password is not kept.

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
