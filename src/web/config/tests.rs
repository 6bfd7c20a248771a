use super::*;
use crate::policy::diag::SourceFile;
use std::process::Command;

fn rendered(text: &str, dir: &Path) -> String {
    let d = parse(text, dir).unwrap_err();
    let source = SourceFile {
        name: "web.yml".into(),
        text: text.into(),
    };
    Diagnostics::new(vec![d], vec![source]).render()
}

fn problem(text: &str) -> String {
    rendered(text, Path::new("/nonexistent"))
}

/// A self-signed certificate and key made by `openssl` in `dir` (`None`
/// where openssl is not installed).
pub(crate) fn certificate(dir: &Path) -> Option<()> {
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output();
    match made {
        Ok(out) if out.status.success() => Some(()),
        Ok(out) => panic!("openssl: {}", String::from_utf8_lossy(&out.stderr)),
        Err(_) => {
            eprintln!("openssl not installed: TLS certificate test skipped");
            None
        }
    }
}

#[test]
fn an_empty_file_changes_nothing() {
    let c = parse("", Path::new(".")).unwrap();
    assert!(c.tls.is_none() && c.auth.is_none() && c.headers.is_empty());
    let c = parse("# nothing yet\n", Path::new(".")).unwrap();
    assert!(c.tls.is_none());
}

#[test]
fn unknown_keys_are_errors_at_their_place() {
    let out = problem("tls_server_config:\n  cert_fil: x.pem\n");
    assert!(
        out.contains("error[unknown-key]: tls_server_config: unknown field `cert_fil`"),
        "{out}"
    );
    assert!(out.contains(" --> web.yml:2:3"), "{out}");
    let out = problem("rate_limit:\n  interval: 1s\n");
    assert!(out.contains("unknown field `rate_limit`"), "{out}");
    assert!(out.contains("--web.max-connections"), "{out}");
}

#[test]
fn what_rustls_lacks_is_refused_with_the_reason() {
    let out = problem("tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS10\n");
    assert!(
        out.contains("unknown variant `TLS10`, expected `TLS12` or `TLS13`"),
        "{out}"
    );
    assert!(out.contains("web.yml:4:16"), "{out}");
    assert!(out.contains("rustls speaks TLS 1.2 and 1.3 only"), "{out}");
    let out = problem("tls_server_config:\n  client_auth_type: RequireAnyClientCert\n");
    assert!(out.contains("use RequireAndVerifyClientCert"), "{out}");
    let out = problem("tls_server_config:\n  curve_preferences: [CurveP521]\n");
    assert!(out.contains("X25519, P-256 and P-384"), "{out}");
    let out = problem("tls_server_config:\n  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n");
    assert!(
        out.contains("unknown variant `TLS_RSA_WITH_RC4_128_SHA`"),
        "{out}"
    );
    let out = problem("tls_server_config:\n  cert_file: c\n  client_allowed_sans: [a]\n");
    assert!(
        out.contains("client_allowed_sans is not supported\n --> web.yml:3:3"),
        "{out}"
    );
}

#[test]
fn places_count_characters_and_underline_the_value() {
    let out = problem("# é é é\ntls_server_config:\n  max_version: TLS14\n");
    assert!(out.contains("web.yml:3:16"), "{out}");
    assert!(out.contains("  |                ^^^^^\n"), "{out}");
}

#[test]
fn wrong_types_and_bad_hashes() {
    let out = problem("basic_auth_users: [alice]\n");
    assert!(out.contains("error[wrong-type]"), "{out}");
    let out = problem("basic_auth_users:\n  alice: $2y$10$short\n  bob: plain\n");
    assert!(
        out.contains("the password of `alice` is not a bcrypt hash\n --> web.yml:2:3"),
        "{out}"
    );
    let out = problem("tls_server_config: [\n");
    assert!(
        out.contains("error[syntax]") || out.contains("error[wrong-type]"),
        "{out}"
    );
}

#[test]
fn users_and_headers() {
    let hash = bcrypt::hash("pw", 4).unwrap();
    let text = format!(
        "basic_auth_users:\n  prometheus: {hash}\nhttp_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\n"
    );
    let c = parse(&text, Path::new(".")).unwrap();
    assert_eq!(c.auth.as_ref().unwrap().users(), ["prometheus"]);
    let names: Vec<&str> = c.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["x-frame-options", "strict-transport-security"]);
    let out = problem("http_server_config:\n  headers:\n    X-Frame-Options: allow\n");
    assert!(
        out.contains("X-Frame-Options must be deny or sameorigin\n --> web.yml:3:5"),
        "{out}"
    );
    let out = problem("http_server_config:\n  headers:\n    X-Powered-By: me\n");
    assert!(out.contains("unknown field `X-Powered-By`"), "{out}");
}

#[test]
fn tls_from_files_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    if certificate(dir.path()).is_none() {
        return;
    }
    let text = "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  min_version: TLS13\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n  curve_preferences: [X25519, CurveP256]\n";
    let c = parse(text, dir.path()).unwrap();
    let tls = c.tls.unwrap();
    assert_eq!(tls.alpn_protocols, [b"http/1.1".to_vec()]);
    assert!(tls.ignore_client_order);
    // Inline PEM works the same; both at once does not.
    let cert = std::fs::read_to_string(dir.path().join("cert.pem")).unwrap();
    let key = std::fs::read_to_string(dir.path().join("key.pem")).unwrap();
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let inline = format!(
        "tls_server_config:\n  cert: |\n{}  key: |\n{}",
        indent(&cert),
        indent(&key)
    );
    assert!(parse(&inline, Path::new("/")).unwrap().tls.is_some());
    let both = format!("{inline}  cert_file: cert.pem\n");
    let out = rendered(&both, dir.path());
    assert!(out.contains("give cert_file or cert, not both"), "{out}");
    // A key that is not the certificate's, a CA without a policy, a
    // policy without a CA.
    let other = tempfile::tempdir().unwrap();
    certificate(other.path()).unwrap();
    let key2 = other.path().join("key.pem");
    let text = format!(
        "tls_server_config:\n  cert_file: cert.pem\n  key_file: {}\n",
        key2.display()
    );
    assert!(rendered(&text, dir.path()).contains("does not fit the certificate"));
    let text = "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  client_ca_file: cert.pem\n";
    assert!(rendered(text, dir.path()).contains("client_auth_type is NoClientCert"));
    let text = "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  client_auth_type: RequireAndVerifyClientCert\n";
    assert!(rendered(text, dir.path()).contains("needs client_ca_file"));
    let text = "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: cert.pem\n";
    assert!(parse(text, dir.path()).unwrap().tls.is_some());
}

#[test]
fn unreadable_files_point_at_their_key() {
    let out = problem("tls_server_config:\n  cert_file: missing.pem\n  key_file: k.pem\n");
    assert!(
        out.contains("error[io]: cannot read `/nonexistent/missing.pem`"),
        "{out}"
    );
    assert!(out.contains("web.yml:2:3"), "{out}");
    let out = problem("tls_server_config:\n  key_file: k.pem\n");
    assert!(out.contains("needs cert_file"), "{out}");
}

#[test]
fn the_shipped_example_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    if certificate(dir.path()).is_none() {
        return;
    }
    let text = include_str!("../../../docs/web-config.yml.example")
        .replace("/etc/egresswatch/tls/", "")
        .replace("# client_auth_type", "client_auth_type")
        .replace(
            "# client_ca_file: clients-ca.pem",
            "client_ca_file: cert.pem",
        );
    let c = parse(&text, dir.path()).unwrap_or_else(|d| panic!("{}", rendered_one(&text, d)));
    assert!(c.tls.is_some());
    assert_eq!(c.auth.unwrap().users(), ["prometheus"]);
    assert_eq!(c.headers.len(), 2);
}

fn rendered_one(text: &str, d: Diagnostic) -> String {
    let source = SourceFile {
        name: "web.yml".into(),
        text: text.into(),
    };
    Diagnostics::new(vec![d], vec![source]).render()
}
