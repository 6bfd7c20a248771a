//! `--web.config.file`: TLS, basic authentication and response headers in
//! the Prometheus exporter-toolkit format (YAML), so the file an operator
//! has for node_exporter works here too. What rustls cannot do (TLS 1.0
//! and 1.1, client certificates accepted without verification, curves and
//! cipher suites it lacks, SAN allow-lists) is an error naming what is
//! supported, never silently weaker. Every problem is reported at
//! file:line:col with the rule files' diagnostics.
//!
//! Relative paths are taken from the file's directory, as exporter-toolkit
//! does.

use super::auth::BasicAuth;
use crate::policy::diag::{Diagnostic, Diagnostics, Kind};
use axum::http::{HeaderName, HeaderValue};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the web config file asks of the server.
#[derive(Default)]
pub struct WebConfig {
    /// Serve HTTPS with this; `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Ask every request for one of these users; `None`: no authentication.
    pub auth: Option<BasicAuth>,
    /// Added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth.as_ref().map(BasicAuth::users))
            .field("headers", &self.headers)
            .finish()
    }
}

/// Reads and checks the file; the certificate and key files it names are
/// read too.
pub fn load(path: &Path) -> Result<WebConfig, Diagnostics> {
    let source = crate::policy::load::read_source(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    parse(&source.text, dir).map_err(|d| Diagnostics::new(vec![d], vec![source]))
}

/// The file's text (its relative paths taken from `dir`).
pub fn parse(text: &str, dir: &Path) -> Result<WebConfig, Diagnostic> {
    let file: File = if text.trim().is_empty() {
        File::default()
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| yaml_error(&e, text))?
    };
    let at = |key: &str| locate(text, key);
    let tls = match &file.tls_server_config {
        Some(t) => Some(Arc::new(t.build(dir).map_err(|p| p.1.at(0, at(p.0)))?)),
        None => None,
    };
    let auth = if file.basic_auth_users.is_empty() {
        None
    } else {
        Some(BasicAuth::new(file.basic_auth_users).map_err(|user| {
            Diagnostic::error(
                Kind::BadValue,
                format!("the password of `{user}` is not a bcrypt hash"),
            )
            .at(0, at(&user))
            .note("make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`")
        })?)
    };
    let headers = file
        .http_server_config
        .map(|h| h.headers.checked())
        .transpose()
        .map_err(|p| p.1.at(0, at(p.0)))?
        .unwrap_or_default();
    Ok(WebConfig { tls, auth, headers })
}

/// A YAML or schema error at its place, without the place repeated in
/// the message.
fn yaml_error(e: &serde_yaml_ng::Error, text: &str) -> Diagnostic {
    let message = e.to_string();
    let (message, at) = match e.location() {
        Some(l) => {
            let suffix = format!(" at line {} column {}", l.line(), l.column());
            let m = message
                .strip_suffix(&suffix)
                .unwrap_or(&message)
                .to_string();
            (m, byte_offset(text, l.line(), l.column()))
        }
        None => (message, 0),
    };
    let kind = if message.contains("unknown field") {
        Kind::UnknownKey
    } else if message.contains("invalid type") {
        Kind::WrongType
    } else if message.contains("unknown variant") {
        Kind::BadValue
    } else {
        Kind::Syntax
    };
    let word = text[at..]
        .find(|c: char| c.is_whitespace() || matches!(c, ',' | ']' | '}'))
        .unwrap_or(text.len() - at);
    let mut d = Diagnostic::error(kind, message.clone()).at(0, at..at + word);
    for (word, why) in UNSUPPORTED {
        if message.contains(&format!("`{word}`")) {
            d = d.note(*why);
        }
    }
    d
}

/// The byte offset of 1-based `line` and character `column` (the YAML
/// parser counts characters).
fn byte_offset(text: &str, line: usize, column: usize) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let rest = text.get(start..).unwrap_or("");
    start
        + rest
            .char_indices()
            .nth(column.saturating_sub(1))
            .map_or(rest.len(), |(i, _)| i)
}

/// exporter-toolkit values rustls does not offer, and why.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("TLS10", "rustls speaks TLS 1.2 and 1.3 only"),
    ("TLS11", "rustls speaks TLS 1.2 and 1.3 only"),
    ("RequestClientCert", "a client certificate is only accepted verified (against client_ca_file): use VerifyClientCertIfGiven"),
    ("RequireAnyClientCert", "a client certificate is only accepted verified (against client_ca_file): use RequireAndVerifyClientCert"),
    ("CurveP521", "the ring provider has X25519, P-256 and P-384"),
    ("rate_limit", "not supported: limit scrapes with --web.max-connections"),
];

/// The span of the first `key:` in `text` (for problems found after
/// parsing; the YAML parser places the others itself).
fn locate(text: &str, key: &str) -> Range<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find(key) {
        let start = from + i;
        let end = start + key.len();
        let rest = text[end..].trim_start_matches(['"', '\'']);
        if rest.trim_start_matches(' ').starts_with(':') {
            return start..end;
        }
        from = end;
    }
    0..0
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    http_server_config: Option<HttpFile>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    cert: Option<String>,
    key: Option<String>,
    #[serde(default)]
    client_auth_type: ClientAuth,
    client_ca_file: Option<PathBuf>,
    client_ca: Option<String>,
    #[serde(default)]
    client_allowed_sans: Vec<String>,
    #[serde(default = "tls12")]
    min_version: Version,
    #[serde(default = "tls13")]
    max_version: Version,
    #[serde(default)]
    cipher_suites: Vec<Suite>,
    #[serde(default = "yes")]
    prefer_server_cipher_suites: bool,
    #[serde(default)]
    curve_preferences: Vec<Curve>,
}

fn tls12() -> Version {
    Version::TLS12
}
fn tls13() -> Version {
    Version::TLS13
}
fn yes() -> bool {
    true
}

#[derive(Deserialize, Default, Copy, Clone, PartialEq, Debug)]
enum ClientAuth {
    #[default]
    NoClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[allow(clippy::upper_case_acronyms)]
#[derive(Deserialize, Copy, Clone, PartialEq, PartialOrd, Debug)]
enum Version {
    TLS12,
    TLS13,
}

/// The TLS 1.2 suites of rustls's ring provider, by their Go names (TLS
/// 1.3 suites are always on, as in Go).
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[derive(Deserialize, Copy, Clone, Debug)]
enum Suite {
    TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    #[serde(alias = "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305")]
    TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    #[serde(alias = "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305")]
    TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

impl Suite {
    fn rustls(self) -> rustls::SupportedCipherSuite {
        use ring::cipher_suite as s;
        match self {
            Suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => {
                s::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            }
            Suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => {
                s::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            }
            Suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => {
                s::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            }
            Suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => {
                s::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            }
            Suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => {
                s::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
            }
            Suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => {
                s::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
            }
        }
    }
}

/// Go's `CurveID` names of the groups the ring provider has.
#[derive(Deserialize, Copy, Clone, Debug)]
enum Curve {
    X25519,
    CurveP256,
    CurveP384,
}

impl Curve {
    fn rustls(self) -> &'static dyn rustls::crypto::SupportedKxGroup {
        match self {
            Curve::X25519 => ring::kx_group::X25519,
            Curve::CurveP256 => ring::kx_group::SECP256R1,
            Curve::CurveP384 => ring::kx_group::SECP384R1,
        }
    }
}

/// A problem found after parsing: the key to point at, and what is wrong.
type Problem = Box<(&'static str, Diagnostic)>;

fn bad(key: &'static str, message: impl Into<String>) -> Problem {
    Box::new((key, Diagnostic::error(Kind::BadValue, message)))
}

impl TlsFile {
    fn build(&self, dir: &Path) -> Result<rustls::ServerConfig, Problem> {
        if !self.client_allowed_sans.is_empty() {
            return Err(bad(
                "client_allowed_sans",
                "client_allowed_sans is not supported",
            ));
        }
        if self.min_version > self.max_version {
            return Err(bad("min_version", "min_version is above max_version"));
        }
        let provider = Arc::new(self.provider());
        let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
            (Version::TLS12, &rustls::version::TLS12),
            (Version::TLS13, &rustls::version::TLS13),
        ]
        .into_iter()
        .filter(|(v, _)| (self.min_version..=self.max_version).contains(v))
        .map(|(_, p)| p)
        .collect();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| bad("cipher_suites", format!("no usable cipher suite: {e}")))?;
        let builder = match self.client_verifier(dir, provider)? {
            Some(v) => builder.with_client_cert_verifier(v),
            None => builder.with_no_client_auth(),
        };
        let (chain, key) = self.certificate(dir)?;
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            bad(
                "key_file",
                format!("the key does not fit the certificate: {e}"),
            )
        })?;
        config.ignore_client_order = self.prefer_server_cipher_suites;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    fn provider(&self) -> CryptoProvider {
        let mut provider = ring::default_provider();
        if !self.cipher_suites.is_empty() {
            let tls13 = provider
                .cipher_suites
                .iter()
                .copied()
                .filter(|s| s.version() == &rustls::version::TLS13);
            let chosen = self.cipher_suites.iter().map(|s| s.rustls());
            provider.cipher_suites = tls13.chain(chosen).collect();
        }
        if !self.curve_preferences.is_empty() {
            provider.kx_groups = self.curve_preferences.iter().map(|c| c.rustls()).collect();
        }
        provider
    }

    fn certificate(
        &self,
        dir: &Path,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Problem> {
        let cert =
            pem(dir, &self.cert_file, &self.cert, "cert_file", "cert")?.ok_or_else(|| {
                bad(
                    "tls_server_config",
                    "tls_server_config needs cert_file (or cert)",
                )
            })?;
        let key = pem(dir, &self.key_file, &self.key, "key_file", "key")?.ok_or_else(|| {
            bad(
                "tls_server_config",
                "tls_server_config needs key_file (or key)",
            )
        })?;
        let chain = certificates(&cert.bytes).map_err(|why| bad(cert.key, why))?;
        let key = PrivateKeyDer::from_pem_slice(&key.bytes)
            .map_err(|e| bad(key.key, format!("no private key in PEM form: {e}")))?;
        Ok((chain, key))
    }

    fn client_verifier(
        &self,
        dir: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>, Problem> {
        let ca = pem(
            dir,
            &self.client_ca_file,
            &self.client_ca,
            "client_ca_file",
            "client_ca",
        )?;
        let ca = match (self.client_auth_type, ca) {
            (ClientAuth::NoClientCert, None) => return Ok(None),
            (ClientAuth::NoClientCert, Some(_)) => {
                return Err(bad(
                    "client_auth_type",
                    "client_ca_file is set but client_auth_type is NoClientCert",
                ))
            }
            (_, None) => {
                return Err(bad(
                    "client_auth_type",
                    "verifying client certificates needs client_ca_file (or client_ca)",
                ))
            }
            (_, Some(ca)) => ca,
        };
        let mut roots = rustls::RootCertStore::empty();
        for c in certificates(&ca.bytes).map_err(|why| bad(ca.key, why))? {
            roots
                .add(c)
                .map_err(|e| bad(ca.key, format!("unusable CA certificate: {e}")))?;
        }
        let mut v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        if self.client_auth_type == ClientAuth::VerifyClientCertIfGiven {
            v = v.allow_unauthenticated();
        }
        let v = v
            .build()
            .map_err(|e| bad(ca.key, format!("client CA: {e}")))?;
        Ok(Some(v))
    }
}

/// PEM text from a file or inline, and the key it came from.
struct Pem {
    key: &'static str,
    bytes: Vec<u8>,
}

fn pem(
    dir: &Path,
    file: &Option<PathBuf>,
    inline: &Option<String>,
    file_key: &'static str,
    inline_key: &'static str,
) -> Result<Option<Pem>, Problem> {
    match (file, inline) {
        (Some(_), Some(_)) => Err(bad(
            inline_key,
            format!("give {file_key} or {inline_key}, not both"),
        )),
        (Some(path), None) => {
            let path = dir.join(path);
            let bytes = std::fs::read(&path).map_err(|e| {
                let message = format!("cannot read `{}`: {e}", path.display());
                Box::new((file_key, Diagnostic::error(Kind::Io, message)))
            })?;
            Ok(Some(Pem {
                key: file_key,
                bytes,
            }))
        }
        (None, Some(text)) => Ok(Some(Pem {
            key: inline_key,
            bytes: text.as_bytes().to_vec(),
        })),
        (None, None) => Ok(None),
    }
}

fn certificates(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in PEM form".into());
    }
    Ok(certs)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    /// Accepted for compatibility: the server speaks HTTP/1.1 only.
    #[serde(default)]
    #[allow(dead_code)]
    http2: Option<bool>,
    #[serde(default)]
    headers: Headers,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Headers {
    #[serde(rename = "Content-Security-Policy")]
    content_security_policy: Option<String>,
    #[serde(rename = "X-Frame-Options")]
    x_frame_options: Option<String>,
    #[serde(rename = "X-Content-Type-Options")]
    x_content_type_options: Option<String>,
    #[serde(rename = "X-XSS-Protection")]
    x_xss_protection: Option<String>,
    #[serde(rename = "Strict-Transport-Security")]
    strict_transport_security: Option<String>,
}

impl Headers {
    fn checked(self) -> Result<Vec<(HeaderName, HeaderValue)>, Problem> {
        let all = [
            (
                "Content-Security-Policy",
                self.content_security_policy,
                None,
            ),
            (
                "X-Frame-Options",
                self.x_frame_options,
                Some(&["deny", "sameorigin"][..]),
            ),
            (
                "X-Content-Type-Options",
                self.x_content_type_options,
                Some(&["nosniff"][..]),
            ),
            ("X-XSS-Protection", self.x_xss_protection, None),
            (
                "Strict-Transport-Security",
                self.strict_transport_security,
                None,
            ),
        ];
        let mut out = Vec::new();
        for (name, value, allowed) in all {
            let Some(value) = value.filter(|v| !v.is_empty()) else {
                continue;
            };
            if let Some(allowed) = allowed {
                if !allowed.iter().any(|a| a.eq_ignore_ascii_case(&value)) {
                    let expected = allowed.join(" or ");
                    return Err(bad(name, format!("{name} must be {expected}")));
                }
            }
            let value = HeaderValue::from_str(&value)
                .map_err(|_| bad(name, format!("{name}: not a valid header value")))?;
            out.push((HeaderName::from_static(lower(name)), value));
        }
        Ok(out)
    }
}

fn lower(name: &str) -> &'static str {
    match name {
        "Content-Security-Policy" => "content-security-policy",
        "X-Frame-Options" => "x-frame-options",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "strict-transport-security",
    }
}

#[cfg(test)]
pub(crate) mod tests;
