//! TLS to PostgreSQL, set in the connection string as libpq reads it:
//!
//! | `sslmode` | encrypted | server's certificate checked |
//! |---|---|---|
//! | `disable` | no | — |
//! | `allow`, `prefer` (the default) | when the server offers it | no |
//! | `require` | always | no; against `sslrootcert` when one is named (as libpq does) |
//! | `verify-ca` | always | signed by a CA of `sslrootcert` |
//! | `verify-full` | always | signed by a CA of `sslrootcert`, and issued for the host connected to |
//!
//! `sslrootcert` is a PEM file of the CAs to trust; without it (or with
//! `sslrootcert=system`) the checking modes trust the system's roots, or
//! the file `SSL_CERT_FILE` names. tokio-postgres knows only the first
//! modes and no `sslrootcert`, so [`split`] takes the TLS settings out of
//! the connection string and gives back what tokio-postgres reads. TLS is
//! rustls with aws-lc-rs, as everywhere else in fastlane (no OpenSSL).

use std::path::PathBuf;
use std::sync::Arc;

use percent_encoding::percent_decode_str;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How a connection uses TLS (`sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Never.
    Disable,
    /// When the server offers it, without checking its certificate
    /// (`allow` and `prefer`).
    Prefer,
    /// Always; the certificate is checked only against a named
    /// `sslrootcert`.
    Require,
    /// Always, with a certificate signed by a trusted CA.
    VerifyCa,
    /// Always, with a certificate signed by a trusted CA for the host.
    VerifyFull,
}

/// The TLS settings of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// `sslmode`.
    pub mode: Mode,
    /// `sslrootcert`, unless absent or `system`.
    pub root_cert: Option<PathBuf>,
}

/// The connection string without its TLS settings, and the settings.
/// Errors name the setting at fault and never contain a password.
pub fn split(url: &str) -> Result<(String, Tls), String> {
    let url = url.trim();
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let (rest, settings) = if is_url {
        split_query(url)?
    } else {
        split_key_values(url)?
    };
    let mut mode = Mode::Prefer;
    let mut root_cert = None;
    for (key, value) in settings {
        match key.as_str() {
            "sslmode" => {
                mode = match value.as_str() {
                    "disable" => Mode::Disable,
                    "allow" | "prefer" => Mode::Prefer,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    other => {
                        return Err(format!(
                            "sslmode {other:?} is not one of disable, allow, prefer, require, \
                             verify-ca, verify-full"
                        ));
                    }
                }
            }
            "sslrootcert" => root_cert = (value != "system").then(|| PathBuf::from(value)),
            other => {
                return Err(format!(
                    "{other} is not supported: fastlane logs in to PostgreSQL with a password, \
                     not a client certificate"
                ));
            }
        }
    }
    Ok((rest, Tls { mode, root_cert }))
}

/// The keys [`split`] takes out.
fn is_tls_key(key: &str) -> bool {
    matches!(key, "sslmode" | "sslrootcert" | "sslcert" | "sslkey")
}

/// `postgres://…?k=v&…`: the URL without the TLS parameters, and those.
fn split_query(url: &str) -> Result<(String, Vec<(String, String)>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), Vec::new()));
    };
    let decode = |text: &str| {
        percent_decode_str(text)
            .decode_utf8()
            .map(|t| t.into_owned())
            .map_err(|_| "a percent-encoded parameter is not UTF-8".to_owned())
    };
    let mut kept = Vec::new();
    let mut settings = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(key)?;
        if is_tls_key(&key) {
            settings.push((key, decode(value)?));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, settings))
}

/// `host=… sslmode=… …`: the string without the TLS settings, and those.
/// Values may be quoted (`'…'`, with `\'` and `\\`), as libpq allows.
fn split_key_values(text: &str) -> Result<(String, Vec<(String, String)>), String> {
    let mut kept = Vec::new();
    let mut settings = Vec::new();
    let mut chars = text.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if chars.next_if(|(_, c)| *c == '=').is_none() {
            // Not a setting: left for tokio-postgres to refuse.
            kept.push(key);
            continue;
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if(|(_, c)| *c == '\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(format!("the quoted value of {key} is not closed")),
                    Some((_, '\'')) => break,
                    Some((_, '\\')) => {
                        if let Some((_, c)) = chars.next() {
                            value.push(c);
                        }
                    }
                    Some((_, c)) => value.push(c),
                }
            }
        } else {
            while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_whitespace()) {
                value.push(c);
            }
        }
        let end = chars.peek().map_or(text.len(), |&(i, _)| i);
        if is_tls_key(&key) {
            settings.push((key, value));
        } else {
            kept.push(text[start..end].trim_end().to_owned());
        }
    }
    Ok((kept.join(" "), settings))
}

impl Tls {
    /// What tokio-postgres is told.
    pub fn ssl_mode(&self) -> SslMode {
        match self.mode {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }

    /// The connector that speaks TLS as these settings say; errors name a
    /// root certificate file that cannot be read.
    pub fn connector(&self) -> Result<MakeRustlsConnect, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let checks = match (self.mode, &self.root_cert) {
            (Mode::Disable | Mode::Prefer, _) | (Mode::Require, None) => Checks::None,
            (Mode::Require | Mode::VerifyCa, _) => Checks::Chain,
            (Mode::VerifyFull, _) => Checks::ChainAndName,
        };
        let config = match checks {
            Checks::None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
                .with_no_client_auth(),
            Checks::Chain => {
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(self.roots()?), provider)
                        .build()
                        .map_err(|e| format!("TLS: {e}"))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyName(webpki)))
                    .with_no_client_auth()
            }
            Checks::ChainAndName => builder
                .with_root_certificates(self.roots()?)
                .with_no_client_auth(),
        };
        Ok(MakeRustlsConnect::new(config))
    }

    /// The CAs to trust: `sslrootcert`'s, or the system's.
    fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                let shown = path.display();
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("sslrootcert {shown}: {e}"))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("sslrootcert {shown}: {e}"))?;
                if certs.is_empty() {
                    return Err(format!("sslrootcert {shown}: no certificate in it"));
                }
                for cert in certs {
                    roots
                        .add(cert)
                        .map_err(|e| format!("sslrootcert {shown}: {e}"))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(
                        "no trusted CA found on this system: name one with sslrootcert".to_owned(),
                    );
                }
            }
        }
        Ok(roots)
    }
}

/// What is checked of the server's certificate.
enum Checks {
    None,
    Chain,
    ChainAndName,
}

/// Checks only that the server holds the key of the certificate it shows
/// (the handshake's signatures): `prefer` and `require` without a root
/// certificate, as libpq does.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The full check but for the name: `verify-ca`.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(mode: Mode, root_cert: Option<&str>) -> Tls {
        Tls {
            mode,
            root_cert: root_cert.map(PathBuf::from),
        }
    }

    #[test]
    fn a_url_gives_up_its_tls_parameters_and_keeps_the_others() {
        let (rest, settings) = split(
            "postgres://u:p@db:5432/app?options=-csearch_path%3Dx&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        )
        .expect("read");
        assert_eq!(rest, "postgres://u:p@db:5432/app?options=-csearch_path%3Dx");
        assert_eq!(settings, tls(Mode::VerifyFull, Some("/etc/ca.pem")));

        let (rest, settings) = split("postgresql://db/app?sslmode=require").expect("read");
        assert_eq!(
            (rest.as_str(), settings),
            ("postgresql://db/app", tls(Mode::Require, None))
        );
        let (_, settings) = split("postgres://db/app").expect("read");
        assert_eq!(settings, tls(Mode::Prefer, None), "libpq's default");
    }

    #[test]
    fn key_value_strings_give_up_their_tls_settings_quoted_or_not() {
        let (rest, settings) = split(
            "host=db user=app sslmode = verify-ca sslrootcert='/my certs/ca\\'s.pem' password='a b'",
        )
        .expect("read");
        assert_eq!(rest, "host=db user=app password='a b'");
        assert_eq!(settings, tls(Mode::VerifyCa, Some("/my certs/ca's.pem")));
        let (_, settings) = split("host=db sslrootcert=system sslmode=verify-full").expect("read");
        assert_eq!(settings, tls(Mode::VerifyFull, None));
    }

    #[test]
    fn unknown_modes_and_client_certificates_are_refused_by_name() {
        let err = split("postgres://db/app?sslmode=verify").expect_err("refused");
        assert!(
            err.contains("\"verify\"") && err.contains("verify-full"),
            "{err}"
        );
        let err = split("host=db sslcert=/c.pem").expect_err("refused");
        assert!(err.starts_with("sslcert is not supported"), "{err}");
        let err = split("host=db sslrootcert='/ca.pem").expect_err("refused");
        assert!(err.contains("not closed"), "{err}");
    }

    #[test]
    fn a_missing_root_certificate_file_is_named() {
        let settings = tls(Mode::VerifyFull, Some("/nonexistent/ca.pem"));
        let err = settings.connector().map(|_| ()).expect_err("refused");
        assert!(err.starts_with("sslrootcert /nonexistent/ca.pem"), "{err}");
    }
}
