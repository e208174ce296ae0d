//! The pre-flight on real keystores, generated here with `rcgen` (certificates), `p12-keystore`
//! (PKCS12) and a small JKS writer (the reader's format, see `super::jks`).

use super::check::{coverage, verdict, Coverage, Leaf, Verdict};
use super::*;

const HOST: &str = "kafka-use1-az1.orders.example.internal";
/// 2026-06-01T00:00:00Z
const NOW: i64 = 1_780_272_000;

struct Made {
    der: Vec<u8>,
    pem: String,
    key_der: Vec<u8>,
    key_pem: String,
}

/// A self-signed certificate for `names`, valid from `from` to `to` (years, 1 January).
fn made(names: &[&str], from: i32, to: i32) -> Made {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(to, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Made {
        der: cert.der().to_vec(),
        pem: cert.pem(),
        key_der: key.serialize_der(),
        key_pem: key.serialize_pem(),
    }
}

fn pkcs12(m: &Made, password: &str) -> Vec<u8> {
    let cert = p12_keystore::Certificate::from_der(&m.der).unwrap();
    let chain = p12_keystore::PrivateKeyChain::new(&m.key_der, [7u8; 20], [cert]);
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry("kafka", p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
    // Few key-derivation rounds: the reader is the same for any count, and the default
    // (thousands of unoptimized PBKDF2 rounds) made these tests the slowest unit tests.
    store
        .writer(password)
        .encryption_iterations(16)
        .mac_iterations(16)
        .write()
        .unwrap()
}

/// A JKS file (version 2): a trusted certificate entry, then one private key entry holding
/// `m` (the key bytes are opaque to the reader).
fn jks(m: &Made, password: &str) -> Vec<u8> {
    let utf = |out: &mut Vec<u8>, s: &str| {
        out.extend((s.len() as u16).to_be_bytes());
        out.extend(s.as_bytes());
    };
    let cert = |out: &mut Vec<u8>, der: &[u8]| {
        utf(out, "X.509");
        out.extend((der.len() as u32).to_be_bytes());
        out.extend(der);
    };
    let mut out = Vec::new();
    out.extend(jks::MAGIC.to_be_bytes());
    out.extend(2u32.to_be_bytes());
    out.extend(2u32.to_be_bytes());
    out.extend(2u32.to_be_bytes());
    utf(&mut out, "ca");
    out.extend(0u64.to_be_bytes());
    cert(&mut out, &made(&["ca.example.internal"], 2020, 2040).der);
    out.extend(1u32.to_be_bytes());
    utf(&mut out, "kafka");
    out.extend(0u64.to_be_bytes());
    out.extend((m.key_der.len() as u32).to_be_bytes());
    out.extend(&m.key_der);
    out.extend(1u32.to_be_bytes());
    cert(&mut out, &m.der);
    let digest = jks::integrity_digest(password, &out);
    out.extend(digest);
    out
}

fn run(properties: &str, hosts: &[&str], now: i64) -> Result<Outcome, String> {
    let props = Properties::parse(properties).unwrap();
    preflight(&Request {
        properties: &props,
        listener: "PRIVATELINK",
        default_protocol: "SSL",
        hosts: hosts.iter().map(|s| s.to_string()).collect(),
        now,
    })
}

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

fn leaf(names: &[&str]) -> Leaf {
    Leaf {
        dns_names: names.iter().map(|s| s.to_string()).collect(),
        not_before: NOW - 100,
        not_after: NOW + 100,
    }
}

#[test]
fn names_cover_hosts_as_rfc_6125_says() {
    use Coverage::*;
    let table = [
        // (certificate name, host or template, coverage)
        ("*.orders.example.internal", HOST, All),
        ("*.ORDERS.example.internal", HOST, All),
        ("kafka-use1-az1.orders.example.internal", HOST, All),
        ("kafka-use1-az1.orders.example.internal.", HOST, All),
        ("kafka-use1-az2.orders.example.internal", HOST, None),
        // One label only: not two, not none.
        ("*.example.internal", HOST, None),
        ("*.orders.example.internal", "orders.example.internal", None),
        // Only the whole left-most label.
        ("kafka-*.orders.example.internal", HOST, None),
        ("kafka-use1-az1.*.example.internal", HOST, None),
        ("*", "localhost", None),
        ("*.internal", "kafka.internal", None),
        // Two labels after the wildcard are enough.
        ("*.example.internal", "kafka.example.internal", All),
        // A name is compared label by label, all of them: a prefix of the host is not it.
        ("kafka.example", "kafka.example.internal", None),
        ("kafka.example.internal", "kafka.example", None),
        ("*.other.internal", HOST, None),
        // Templates (check-config): a wildcard covers every rendering, a zonal name some.
        (
            "*.orders.example.internal",
            "kafka-{az_id}.orders.example.internal",
            All,
        ),
        (
            "kafka-use1-az1.orders.example.internal",
            "kafka-{az_id}.orders.example.internal",
            Some,
        ),
        (
            "broker.orders.example.internal",
            "kafka-{az_id}.orders.example.internal",
            None,
        ),
        (
            "*.orders.example.internal",
            "kafka-{az_id}.{cluster}.example.internal",
            Some,
        ),
        ("*.x.internal", "kafka-{az_id}.{shard}.x.internal", None),
    ];
    for (name, host, want) in table {
        assert_eq!(coverage(name, host), want, "{name} vs {host}");
    }
}

#[test]
fn verdict_checks_every_host_then_the_validity_period() {
    let hosts = |h: &[&str]| h.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let wildcard = leaf(&["*.orders.example.internal"]);
    let ok = Verdict::Valid { partly: vec![] };
    assert_eq!(verdict(&wildcard, &hosts(&[HOST]), NOW), ok);
    assert_eq!(
        verdict(&wildcard, &hosts(&[HOST, "bootstrap.other.internal"]), NOW),
        Verdict::NotCovered {
            host: "bootstrap.other.internal".into()
        }
    );
    assert_eq!(
        verdict(&wildcard, &hosts(&[HOST]), NOW + 101),
        Verdict::Expired
    );
    assert_eq!(
        verdict(&wildcard, &hosts(&[HOST]), NOW - 101),
        Verdict::NotYetValid
    );
    // The bounds are inside the period (RFC 5280: notBefore and notAfter inclusive).
    assert_eq!(verdict(&wildcard, &hosts(&[HOST]), NOW + 100), ok);
    assert_eq!(verdict(&wildcard, &hosts(&[HOST]), NOW - 100), ok);
    // No DNS name covers nothing.
    assert!(matches!(
        verdict(&leaf(&[]), &hosts(&[HOST]), NOW),
        Verdict::NotCovered { .. }
    ));
    let zonal = leaf(&[HOST]);
    assert_eq!(
        verdict(
            &zonal,
            &hosts(&["kafka-{az_id}.orders.example.internal"]),
            NOW
        ),
        Verdict::Valid {
            partly: vec!["kafka-{az_id}.orders.example.internal".into()]
        }
    );
}

fn pkcs12_props(path: &str, password: &str) -> String {
    format!("listener.security.protocol.map=PRIVATELINK:SSL\nssl.keystore.type=PKCS12\nssl.keystore.location={path}\nssl.keystore.password={password}\n")
}

#[test]
fn pkcs12_keystore_is_read_and_its_names_checked() {
    let dir = tempfile::tempdir().unwrap();
    let m = made(
        &["*.orders.example.internal", "bootstrap.example.internal"],
        2026,
        2027,
    );
    let path = write(&dir, "broker.p12", &pkcs12(&m, "s3cret"));
    let props = pkcs12_props(&path, "s3cret");
    let Ok(Outcome::Checked(summary)) = run(&props, &[HOST, "bootstrap.example.internal"], NOW)
    else {
        panic!("not checked");
    };
    assert_eq!(summary.days_left, 214);
    assert_eq!(summary.keystore, path);
    let line = summary.line();
    for needle in [
        &path,
        "*.orders.example.internal",
        "2027-01-01",
        "214 days left",
    ] {
        assert!(line.contains(needle), "{needle}: {line}");
    }
    let refused = run(&props, &["kafka-use1-az1.payments.example.internal"], NOW).unwrap_err();
    assert_eq!(
        refused,
        format!("certificate check: {path} (listener PRIVATELINK): does not cover kafka-use1-az1.payments.example.internal; it names *.orders.example.internal, bootstrap.example.internal")
    );
}

#[test]
fn a_wrong_password_is_an_error_and_an_unreadable_one_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let m = made(&["*.other.internal"], 2026, 2027);
    let path = write(&dir, "broker.p12", &pkcs12(&m, "s3cret"));
    let wrong = run(&pkcs12_props(&path, "guess"), &[HOST], NOW).unwrap_err();
    assert!(
        wrong.contains(&path) && wrong.contains("wrong password"),
        "{wrong}"
    );
    // A config provider reference: Kafka resolves it at start-up; the agent cannot check, warns
    // and goes on (even though this certificate would not cover the host).
    let props = pkcs12_props(
        &path,
        "${file:/etc/kafka/secrets.properties:keystore.password}",
    );
    let Ok(Outcome::Unchecked { warning }) = run(&props, &[HOST], NOW) else {
        panic!("not unchecked");
    };
    assert!(
        warning.contains(&path) && warning.contains("cannot check") && warning.contains("${file:"),
        "{warning}"
    );
}

#[test]
fn jks_keystore_is_read_with_its_integrity_check() {
    let dir = tempfile::tempdir().unwrap();
    let m = made(&["*.orders.example.internal"], 2026, 2027);
    let path = write(&dir, "broker.jks", &jks(&m, "s3cret"));
    // No ssl.keystore.type: Kafka's default, JKS.
    let props = |password: &str| {
        format!("listener.security.protocol.map=PRIVATELINK:SASL_SSL\nssl.keystore.location={path}\nssl.keystore.password={password}\n")
    };
    assert!(matches!(
        run(&props("s3cret"), &[HOST], NOW),
        Ok(Outcome::Checked(_))
    ));
    let refused = run(&props("s3cret"), &["b.other.internal"], NOW).unwrap_err();
    assert!(
        refused.ends_with("does not cover b.other.internal; it names *.orders.example.internal"),
        "{refused}"
    );
    let wrong = run(&props("guess"), &[HOST], NOW).unwrap_err();
    assert!(wrong.contains("password was incorrect"), "{wrong}");
    // JKS certificates are not encrypted: checked even when the password is unreadable.
    assert!(matches!(
        run(&props("${env:KEYSTORE_PASSWORD}"), &[HOST], NOW),
        Ok(Outcome::Checked(_))
    ));
    // A PKCS12 file under the JKS type is read as PKCS12 (Java's keystore.type.compat).
    let p12 = write(&dir, "broker.p12", &pkcs12(&m, "s3cret"));
    let props = format!("ssl.keystore.location={p12}\nssl.keystore.password=s3cret\n");
    assert!(matches!(run(&props, &[HOST], NOW), Ok(Outcome::Checked(_))));
}

#[test]
fn pem_keystore_is_read_from_a_file_or_inline() {
    let dir = tempfile::tempdir().unwrap();
    let m = made(&[HOST], 2026, 2027);
    let path = write(
        &dir,
        "broker.pem",
        format!("{}{}", m.key_pem, m.pem).as_bytes(),
    );
    let props = format!("listener.security.protocol.map=PRIVATELINK:SSL\nlistener.name.privatelink.ssl.keystore.type=PEM\nlistener.name.privatelink.ssl.keystore.location={path}\n");
    assert!(matches!(run(&props, &[HOST], NOW), Ok(Outcome::Checked(_))));
    assert!(run(&props, &["kafka-use1-az2.orders.example.internal"], NOW).is_err());
    // Inline, continued over lines the way server.properties holds it.
    let continued = m.pem.trim_end().replace('\n', " \\\n  ");
    let props = format!("listener.security.protocol.map=PRIVATELINK:SSL\nssl.keystore.type=PEM\nssl.keystore.certificate.chain={continued}\nssl.keystore.key=unused\n");
    let Ok(Outcome::Checked(summary)) = run(&props, &[HOST], NOW) else {
        panic!("not checked");
    };
    assert_eq!(summary.keystore, "ssl.keystore.certificate.chain");
    let refused = run(&props, &["b.other.internal"], NOW).unwrap_err();
    assert!(refused.starts_with("certificate check: ssl.keystore.certificate.chain (listener PRIVATELINK): does not cover b.other.internal"), "{refused}");
}

#[test]
fn expired_and_not_yet_valid_certificates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let old = made(&["*.orders.example.internal"], 2020, 2025);
    let path = write(&dir, "old.p12", &pkcs12(&old, "pw"));
    let refused = run(&pkcs12_props(&path, "pw"), &[HOST], NOW).unwrap_err();
    assert!(refused.contains("expired on 2025-01-01"), "{refused}");
    let new = made(&["*.orders.example.internal"], 2027, 2028);
    let path = write(&dir, "new.p12", &pkcs12(&new, "pw"));
    let refused = run(&pkcs12_props(&path, "pw"), &[HOST], NOW).unwrap_err();
    assert!(refused.contains("not valid before 2027-01-01"), "{refused}");
}

#[test]
fn a_missing_keystore_file_is_an_error_naming_it() {
    let props = pkcs12_props("/nonexistent/broker.p12", "pw");
    let refused = run(&props, &[HOST], NOW).unwrap_err();
    assert!(
        refused.starts_with("certificate check: /nonexistent/broker.p12 (listener PRIVATELINK): cannot read the keystore"),
        "{refused}"
    );
}

#[test]
fn only_a_tls_listener_with_a_keystore_is_checked() {
    let p = "listener.security.protocol.map=PRIVATELINK:PLAINTEXT\nssl.keystore.location=/nonexistent\n";
    assert_eq!(run(p, &[HOST], NOW), Ok(Outcome::NotTls));
    // No keystore at all: `missing_keystore` warns about that.
    assert_eq!(run("broker.id=1\n", &[HOST], NOW), Ok(Outcome::NotTls));
}

#[test]
fn close_to_expiry_warns() {
    let dir = tempfile::tempdir().unwrap();
    let m = made(&["*.orders.example.internal"], 2026, 2027);
    let path = write(&dir, "broker.p12", &pkcs12(&m, "pw"));
    let props = pkcs12_props(&path, "pw");
    let now = NOW + 200 * 86_400;
    let outcome = run(&props, &[HOST], now).unwrap();
    let warnings = outcome.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("14 days left"), "{}", warnings[0]);
    assert!(run(&props, &[HOST], NOW).unwrap().warnings().is_empty());
}
