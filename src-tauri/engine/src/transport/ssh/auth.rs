//! Logging in once the host key is trusted: by password, by a key file, or
//! with the keys of the SSH agent.
//!
//! Secrets pass straight from the [`Auth`] value to russh; nothing here logs
//! or keeps them.

use std::sync::Arc;

use russh::client::{AuthResult, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use tracing::debug;

use super::HostKeyGuard;
use crate::transport::{Auth, Target, TransportError};

/// Logs in as `target` says; a refusal by the device is
/// [`TransportError::AuthenticationFailed`].
pub(super) async fn authenticate(
    handle: &mut Handle<HostKeyGuard>,
    target: &Target,
    endpoint: &str,
) -> Result<(), TransportError> {
    let user = target.endpoint.user.as_str();
    let accepted = match &target.auth {
        Auth::Password(password) => {
            let result = handle
                .authenticate_password(user, password)
                .await
                .map_err(|e| session_error(endpoint, "password authentication", e))?;
            result.success()
        }
        Auth::KeyFile { path, passphrase } => {
            let key = read_key_file(path, passphrase.as_deref()).await?;
            with_key(handle, user, key, endpoint).await?
        }
        Auth::Agent => with_agent(handle, user, endpoint).await?,
    };
    if accepted {
        Ok(())
    } else {
        Err(TransportError::AuthenticationFailed {
            endpoint: endpoint.to_owned(),
            user: user.to_owned(),
        })
    }
}

/// Reads a private key in OpenSSH or PEM form, decrypting it with
/// `passphrase` when it is encrypted.
async fn read_key_file(
    path: &std::path::Path,
    passphrase: Option<&str>,
) -> Result<PrivateKey, TransportError> {
    let key_file_error = |reason: String| TransportError::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| key_file_error(e.to_string()))?;
    russh::keys::decode_secret_key(&text, passphrase).map_err(|e| {
        key_file_error(match e {
            russh::keys::Error::KeyIsEncrypted => {
                "the key is encrypted and no passphrase was given".to_owned()
            }
            // A wrong passphrase decrypts to garbage, which reads as a
            // damaged key; say both, since we cannot tell them apart.
            other => format!("wrong passphrase or unreadable key ({other})"),
        })
    })
}

/// Offers one private key; RSA keys sign with the best hash the server
/// accepts.
async fn with_key(
    handle: &mut Handle<HostKeyGuard>,
    user: &str,
    key: PrivateKey,
    endpoint: &str,
) -> Result<bool, TransportError> {
    let hash = rsa_hash(handle, key.public_key(), endpoint).await?;
    let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
    let result = handle
        .authenticate_publickey(user, key)
        .await
        .map_err(|e| session_error(endpoint, "public key authentication", e))?;
    Ok(result.success())
}

/// Offers every key the agent holds, in its order, until one is accepted.
async fn with_agent(
    handle: &mut Handle<HostKeyGuard>,
    user: &str,
    endpoint: &str,
) -> Result<bool, TransportError> {
    let mut agent = AgentClient::connect_env()
        .await
        .map_err(|e| TransportError::Agent(format!("cannot reach the agent: {e}")))?;
    if let Some(binding) = handle.agent_session_binding() {
        // Only agents with destination-constrained keys need the binding;
        // an agent that does not know the extension still signs.
        if let Err(e) = agent.bind_session(binding, false).await {
            debug!(%endpoint, error = %e, "ssh agent did not bind the session");
        }
    }
    let identities = agent
        .request_identities()
        .await
        .map_err(|e| TransportError::Agent(format!("cannot list the agent's keys: {e}")))?;
    if identities.is_empty() {
        return Err(TransportError::Agent("the agent holds no keys".to_owned()));
    }

    for identity in identities {
        let AgentIdentity::PublicKey { key, .. } = identity else {
            // Certificates need a certificate-aware login we do not offer.
            continue;
        };
        let hash = rsa_hash(handle, &key, endpoint).await?;
        let fingerprint = key.fingerprint(HashAlg::Sha256);
        match handle
            .authenticate_publickey_with(user, key, hash, &mut agent)
            .await
        {
            Ok(AuthResult::Success) => return Ok(true),
            Ok(AuthResult::Failure { .. }) => {
                debug!(%endpoint, %fingerprint, "device refused an agent key");
            }
            Err(e) => {
                // The agent may decline one key (a confirmation refused);
                // the next may still work.
                debug!(%endpoint, %fingerprint, error = %e, "agent could not sign");
            }
        }
        if handle.is_closed() {
            break;
        }
    }
    Ok(false)
}

/// The hash an RSA key signs with: the strongest the server announced.
/// Other keys have a fixed hash, and asking would cost a wait for the
/// server's extension list.
async fn rsa_hash(
    handle: &Handle<HostKeyGuard>,
    key: &PublicKey,
    endpoint: &str,
) -> Result<Option<HashAlg>, TransportError> {
    if !key.algorithm().is_rsa() {
        return Ok(None);
    }
    let best = handle
        .best_supported_rsa_hash()
        .await
        .map_err(|e| session_error(endpoint, "reading the server's signature algorithms", e))?;
    Ok(best.flatten())
}

fn session_error(endpoint: &str, step: &str, error: russh::Error) -> TransportError {
    TransportError::Session {
        endpoint: endpoint.to_owned(),
        reason: format!("{step}: {error}"),
    }
}
