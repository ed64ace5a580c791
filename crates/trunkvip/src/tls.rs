//! TLS settings (rustls through tokio-rustls): the server side for
//! carriers, with an optional client-certificate check, and the client side
//! toward TLS Edges. TLS 1.2 and 1.3 only.
//!
//! Both configurations sit behind a lock that SIGHUP swaps
//! ([`TlsState::reload`]): a handshake takes the configuration current at
//! its start, so connections already open are never touched.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::{Arc, RwLock};

use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::TlsConnector;

use crate::config::TlsFiles;

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Where the system keeps its CA bundle (Debian), used to check TLS Edges
/// when `tls.edge_ca` is not set.
const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The certificates in force, swapped whole on reload.
#[derive(Debug)]
pub struct TlsState {
    files: TlsFiles,
    server: RwLock<Arc<ServerConfig>>,
    client: RwLock<Arc<ClientConfig>>,
}

impl TlsState {
    pub fn load(files: &TlsFiles) -> Result<TlsState, String> {
        let (server, client) = build(files)?;
        Ok(TlsState {
            files: files.clone(),
            server: RwLock::new(server),
            client: RwLock::new(client),
        })
    }

    /// Reads the files again; on error the certificates in force stay.
    pub fn reload(&self) -> Result<(), String> {
        let (server, client) = build(&self.files)?;
        *self.server.write().unwrap_or_else(|e| e.into_inner()) = server;
        *self.client.write().unwrap_or_else(|e| e.into_inner()) = client;
        Ok(())
    }

    /// The server side in force, for a handshake started by hand (the
    /// listener reads the ClientHello first: see `transport::stream`).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn connector(&self) -> TlsConnector {
        TlsConnector::from(
            self.client
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn build(files: &TlsFiles) -> Result<(Arc<ServerConfig>, Arc<ClientConfig>), String> {
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let server = ServerConfig::builder_with_protocol_versions(VERSIONS);
    let mut server = match &files.client_ca {
        Some(ca) => {
            let roots = load_roots(ca)?;
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| format!("tls.client_ca {}: {e}", ca.display()))?;
            server.with_client_cert_verifier(verifier)
        }
        None => server.with_no_client_auth(),
    }
    .with_single_cert(certs.clone(), key.clone_key())
    .map_err(|e| format!("tls.cert and tls.key: {e}"))?;

    let roots = match &files.edge_ca {
        Some(ca) => load_roots(ca)?,
        None if Path::new(SYSTEM_CA).exists() => {
            // The system bundle may hold certificates webpki refuses: skip those.
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(load_certs(Path::new(SYSTEM_CA))?);
            roots
        }
        None => RootCertStore::empty(),
    };
    let mut client = ClientConfig::builder_with_protocol_versions(VERSIONS)
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| format!("tls.cert and tls.key: {e}"))?;
    // `[debug] keylog`: the secrets of both sides, for Wireshark.
    if let Some(k) = crate::capture::key_log() {
        server.key_log = k.clone();
        client.key_log = k;
    }
    Ok((Arc::new(server), Arc::new(client)))
}

fn open(path: &Path) -> Result<BufReader<File>, String> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    rustls_pemfile::private_key(&mut open(path)?)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no PEM private key in it", path.display()))
}

fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(path)? {
        roots
            .add(c)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(roots)
}
