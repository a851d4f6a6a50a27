//! TLS for the hub's `https://` names: a self-signed certificate made when the hub starts, for
//! exactly the names asked for, served with rustls on the ring provider.
//!
//! The certificate lives only as long as the hub, so nothing is ever written to disk and no
//! test depends on a certificate that could expire. Clients trust it either explicitly (a test's
//! rustls client adds [`crate::Hub::certificate_der`] to its roots) or by being told to ignore
//! certificate errors for that profile (a throwaway headless browser).

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use crate::HubStartError;

/// The certificate and the acceptor that serves it.
pub(crate) struct Tls {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) certificate_der: Vec<u8>,
}

/// A self-signed certificate for `names` (DNS names, or IP addresses written as such) and a
/// rustls acceptor offering only HTTP/1.1 over ALPN, since that is all the hub speaks (a browser
/// offered `h2` would otherwise try it and fail).
pub(crate) fn make(names: &[String]) -> Result<Tls, HubStartError> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec()).map_err(HubStartError::Certificate)?;
    let certificate_der = certified.cert.der().to_vec();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(HubStartError::Tls)?
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(certificate_der.clone())], key)
        .map_err(HubStartError::Tls)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(config)), certificate_der })
}
