//! `trunkvip gen-certs`: development certificates made with rcgen — a CA,
//! a server certificate it signs (for the TLS listener and `[tls]`), and a
//! client certificate it signs (for a carrier when `tls.client_ca` is set,
//! or for stunnel in the tests). Never for production.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The files written, by role.
#[derive(Clone, Debug)]
pub struct Written {
    pub ca: PathBuf,
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn write(path: &Path, text: &str, secret: bool) -> Result<(), String> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes `ca.pem`, `ca.key`, `cert.pem`, `key.pem`, `client.pem` and
/// `client.key` into `dir`. `names` go in the server certificate's
/// subjectAltName (DNS names or IP addresses).
pub fn generate(dir: &Path, names: &[String]) -> Result<Written, String> {
    let e = |e: rcgen::Error| e.to_string();
    fs::create_dir_all(dir).map_err(|err| format!("{}: {err}", dir.display()))?;

    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.distinguished_name
        .push(DnType::CommonName, "trunkvip development CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(e)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
    let issuer = Issuer::new(ca, &ca_key);

    let mut server = CertificateParams::new(names.to_vec()).map_err(e)?;
    server.distinguished_name.push(
        DnType::CommonName,
        names.first().map_or("trunkvip", |n| n.as_str()),
    );
    server.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let server_key = KeyPair::generate().map_err(e)?;
    let server_cert = server.signed_by(&server_key, &issuer).map_err(e)?;

    let mut client = CertificateParams::new(vec!["carrier.invalid".to_string()]).map_err(e)?;
    client
        .distinguished_name
        .push(DnType::CommonName, "trunkvip development carrier");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate().map_err(e)?;
    let client_cert = client.signed_by(&client_key, &issuer).map_err(e)?;

    let w = Written {
        ca: dir.join("ca.pem"),
        ca_key: dir.join("ca.key"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    };
    write(&w.ca, &ca_cert.pem(), false)?;
    write(&w.ca_key, &ca_key.serialize_pem(), true)?;
    // The chain: our certificate, then the CA's.
    write(&w.cert, &(server_cert.pem() + &ca_cert.pem()), false)?;
    write(&w.key, &server_key.serialize_pem(), true)?;
    write(&w.client_cert, &(client_cert.pem() + &ca_cert.pem()), false)?;
    write(&w.client_key, &client_key.serialize_pem(), true)?;
    Ok(w)
}
