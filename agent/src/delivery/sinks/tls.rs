//! TLS client settings shared by the syslog and HTTP sinks: rustls with the
//! ring provider, trusting either the CAs of `ca_file` (private PKI) or the
//! public web roots. Client certificates are not supported yet.

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use super::SinkSetupError;

pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, SinkSetupError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = |e: &dyn std::fmt::Display| SinkSetupError::CaFile {
                path: path.to_path_buf(),
                problem: e.to_string(),
            };
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))?;
            for cert in certs {
                roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
            if roots.is_empty() {
                return Err(SinkSetupError::NoCertificate {
                    path: path.to_path_buf(),
                });
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    // An explicit provider: no process-wide default has to be installed.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SinkSetupError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

pub fn server_name(name: &str) -> Result<ServerName<'static>, SinkSetupError> {
    ServerName::try_from(name.to_string()).map_err(|e| SinkSetupError::ServerName {
        name: name.to_string(),
        problem: e.to_string(),
    })
}
