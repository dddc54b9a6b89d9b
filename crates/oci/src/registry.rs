//! Talking to a registry through `oci-client`: push a module as an
//! artifact, pull one by reference into the [`Store`], checking every
//! digest on the way.

use crate::artifact::{self, MANIFEST, MAX_MANIFEST};
use crate::store::Store;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWrite;

/// The largest module pulled.
pub const MAX_MODULE: u64 = 512 << 20;
/// The longest a whole pull may take: the client's timeouts bound each
/// connect and read, not a registry that drips bytes for ever.
pub const PULL_TIMEOUT: Duration = Duration::from_secs(600);

/// How to reach registries.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Registries (`host` or `host:port`) spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// A user name and password given to wedge; without them, the Docker
    /// config file's (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`,
    /// credential helpers included); without those, anonymous.
    pub credentials: Option<(String, String)>,
}

/// What went wrong, with the reference it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "`{reference}` is not an OCI reference ({reason}); write it as oci://REGISTRY/REPOSITORY:TAG or …@sha256:DIGEST"
    )]
    Reference { reference: String, reason: String },
    #[error("{reference}: {message}")]
    Registry { reference: String, message: String },
    #[error(
        "{reference}: {what} does not match its digest (expected {expected}, got {actual}); refusing it"
    )]
    Tampered {
        reference: String,
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("{reference}: not a Wasm artifact: {why}")]
    NotWasm { reference: String, why: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// A module pulled (or found in the store).
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The module in the store.
    pub path: PathBuf,
    /// The manifest's digest: `REPOSITORY@DIGEST` pulls exactly this again.
    pub manifest: String,
    /// The module's digest.
    pub layer: String,
    /// Whether the module itself was downloaded (not found in the store).
    pub downloaded: bool,
    /// The registry's error when a tag could not be resolved and the module
    /// it named last time was used instead.
    pub stale: Option<String>,
}

/// A module pushed.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub manifest: String,
    pub layer: String,
    pub size: u64,
}

/// `oci://REF` or `REF` as a reference. The registry and the tag or
/// digest must be written out: wedge assumes neither Docker Hub nor
/// `latest`, so a reference always means one thing on every node.
pub fn parse(reference: &str) -> Result<Reference, Error> {
    let bare = reference.strip_prefix("oci://").unwrap_or(reference);
    let refuse = |reason: &str| Error::Reference {
        reference: reference.to_string(),
        reason: reason.to_string(),
    };
    let host = bare.split_once('/').map(|(host, _)| host);
    if !host.is_some_and(|h| h.contains(['.', ':']) || h == "localhost") {
        return Err(refuse(
            "it names no registry; write the registry's host first, e.g. ghcr.io/org/fn:v1",
        ));
    }
    let r = bare
        .parse::<Reference>()
        .map_err(|e| refuse(&e.to_string()))?;
    let last = bare.rsplit('/').next().unwrap_or(bare);
    if r.digest().is_none() && !last.contains(':') {
        return Err(refuse(
            "give a tag (:v1) or a digest (@sha256:…); wedge does not assume `latest`",
        ));
    }
    Ok(r)
}

fn client(opts: &Options) -> Client {
    // reqwest's rustls needs a process-wide provider: ring, as wedge's own
    // TLS uses. Installing it twice is harmless (the second is refused).
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new(ClientConfig {
        protocol: if opts.insecure.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(opts.insecure.clone())
        },
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(60)),
        ..ClientConfig::default()
    })
}

fn auth(r: &Reference, opts: &Options) -> RegistryAuth {
    if let Some((user, password)) = &opts.credentials {
        return RegistryAuth::Basic(user.clone(), password.clone());
    }
    use docker_credential::DockerCredential;
    match docker_credential::get_credential(r.resolve_registry()) {
        Ok(DockerCredential::UsernamePassword(user, password)) => {
            RegistryAuth::Basic(user, password)
        }
        Ok(DockerCredential::IdentityToken(token)) => RegistryAuth::Bearer(token),
        Err(_) => RegistryAuth::Anonymous,
    }
}

/// The registry's error with its causes (the client's own message often
/// leaves out "connection refused" and the like), and a hint when a TLS
/// connection failed where the registry may speak plain HTTP.
fn registry_error(reference: &str, e: OciDistributionError) -> Error {
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = c.source();
    }
    let api_error = matches!(
        e,
        OciDistributionError::RegistryError { .. }
            | OciDistributionError::ServerError { .. }
            | OciDistributionError::AuthenticationFailure(_)
            | OciDistributionError::UnauthorizedError { .. }
    );
    if !api_error && message.contains("https://") {
        message.push_str(
            " (if the registry speaks plain HTTP, name it with --insecure-registry HOST:PORT \
             or WEDGE_INSECURE_REGISTRIES)",
        );
    }
    Error::Registry {
        reference: reference.to_string(),
        message,
    }
}

/// Pushes the module `wasm` to `reference` in the TAG Runtime layout.
pub async fn push(wasm: Vec<u8>, reference: &str, opts: &Options) -> Result<Pushed, Error> {
    let r = parse(reference)?;
    if r.digest().is_some() {
        return Err(Error::Reference {
            reference: reference.into(),
            reason: "push to a tag; the digest is the registry's answer".into(),
        });
    }
    let a = artifact::build(&wasm).map_err(|why| Error::NotWasm {
        reference: reference.into(),
        why,
    })?;
    let client = client(opts);
    let fail = |e| registry_error(reference, e);
    client
        .auth(&r, &auth(&r, opts), RegistryOperation::Push)
        .await
        .map_err(fail)?;
    let size = wasm.len() as u64;
    client
        .push_blob(&r, wasm, &a.layer_digest)
        .await
        .map_err(fail)?;
    client
        .push_blob(&r, a.config, &a.config_digest)
        .await
        .map_err(fail)?;
    client
        .push_manifest_raw(&r, a.manifest, http::HeaderValue::from_static(MANIFEST))
        .await
        .map_err(fail)?;
    Ok(Pushed {
        manifest: a.manifest_digest,
        layer: a.layer_digest,
        size,
    })
}

/// Pulls the module `reference` names into `store`, or finds it there: a
/// digest reference already pulled needs no registry at all; a tag is
/// resolved (and, if the registry cannot be reached, what it named last time
/// is used, with the registry's error in [`Pulled::stale`]).
pub async fn pull(reference: &str, store: &Store, opts: &Options) -> Result<Pulled, Error> {
    match tokio::time::timeout(PULL_TIMEOUT, pull_within(reference, store, opts)).await {
        Ok(pulled) => pulled,
        Err(_) => Err(Error::Registry {
            reference: reference.to_string(),
            message: format!(
                "the pull did not finish within {} s",
                PULL_TIMEOUT.as_secs()
            ),
        }),
    }
}

async fn pull_within(reference: &str, store: &Store, opts: &Options) -> Result<Pulled, Error> {
    let r = parse(reference)?;
    let io = |what: &str| {
        let what = format!("{reference}: {what}");
        move |source| Error::Io { what, source }
    };
    if let Some(d) = r.digest()
        && let Some(layer) = store.layer_of(d)
    {
        return Ok(Pulled {
            path: store.blob(&layer),
            manifest: d.to_string(),
            layer,
            downloaded: false,
            stale: None,
        });
    }
    let client = client(opts);
    let whole = r.whole();
    let raw = match client
        .pull_manifest_raw(&r, &auth(&r, opts), &[MANIFEST])
        .await
    {
        Ok((raw, _)) => raw,
        Err(e) => {
            if r.digest().is_none()
                && let Some(d) = store.last_resolved(&whole)
                && let Some(layer) = store.layer_of(&d)
            {
                return Ok(Pulled {
                    path: store.blob(&layer),
                    manifest: d,
                    layer,
                    downloaded: false,
                    stale: Some(e.to_string()),
                });
            }
            return Err(registry_error(reference, e));
        }
    };
    if raw.len() > MAX_MANIFEST {
        return Err(Error::NotWasm {
            reference: reference.into(),
            why: format!("its manifest is {} bytes, over {MAX_MANIFEST}", raw.len()),
        });
    }
    let manifest = artifact::digest(&raw);
    if let Some(want) = r.digest()
        && want != manifest
    {
        return Err(Error::Tampered {
            reference: reference.into(),
            what: "the manifest",
            expected: want.into(),
            actual: manifest,
        });
    }
    let layer = artifact::wasm_layer(&raw).map_err(|why| Error::NotWasm {
        reference: reference.into(),
        why,
    })?;
    if layer.size > MAX_MODULE {
        return Err(Error::NotWasm {
            reference: reference.into(),
            why: format!("its module is {} bytes, over {MAX_MODULE}", layer.size),
        });
    }
    let path = store.blob(&layer.digest);
    let downloaded = !path.is_file();
    if downloaded {
        let tmp = store
            .scratch()
            .map_err(io("creating a file in the store"))?;
        let file = tmp.reopen().map_err(io("opening a file in the store"))?;
        let out = Bounded {
            inner: tokio::fs::File::from_std(file),
            left: layer.size,
        };
        let descriptor = OciDescriptor {
            media_type: layer.media_type.clone(),
            digest: layer.digest.clone(),
            size: layer.size as i64,
            ..OciDescriptor::default()
        };
        match client.pull_blob(&r, &descriptor, out).await {
            Ok(()) => {}
            Err(OciDistributionError::DigestError(
                oci_client::errors::DigestError::VerificationError { expected, actual },
            )) => {
                return Err(Error::Tampered {
                    reference: reference.into(),
                    what: "the module's blob",
                    expected,
                    actual,
                });
            }
            Err(e) => return Err(registry_error(reference, e)),
        }
        tmp.persist(&path)
            .map_err(|e| e.error)
            .map_err(io("storing the module"))?;
    }
    store
        .remember(&manifest, &layer.digest)
        .map_err(io("recording the manifest"))?;
    if r.digest().is_none() {
        store
            .resolved(&whole, &manifest)
            .map_err(io("recording the tag"))?;
    }
    Ok(Pulled {
        path,
        manifest,
        layer: layer.digest,
        downloaded,
        stale: None,
    })
}

/// A writer that fails once more than the blob's declared size arrives,
/// so a registry cannot fill the disk before the digest check.
struct Bounded<W> {
    inner: W,
    left: u64,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Bounded<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if buf.len() as u64 > self.left {
            return Poll::Ready(Err(std::io::Error::other(
                "the registry sent more bytes than the manifest declares",
            )));
        }
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.left -= n as u64;
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_their_registry_and_their_tag_or_digest() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(parse("oci://ghcr.io/org/fn:v1").is_ok());
        assert!(parse("127.0.0.1:5000/fn:v1").is_ok());
        assert!(parse("localhost/fn:v1").is_ok());
        assert_eq!(
            parse(&format!("r.example/fn@{d}")).unwrap().digest(),
            Some(d.as_str())
        );
        for bad in [
            "oci://fn:v1",
            "oci://org/fn:v1",
            "oci://ghcr.io/org/fn",
            "oci://ghcr.io/Org/fn:v1",
            "oci://bad ref",
        ] {
            assert!(matches!(parse(bad), Err(Error::Reference { .. })), "{bad}");
        }
    }
}
