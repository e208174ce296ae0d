//! The certificate pre-flight (issue 17) through the binary: a TLS listener whose certificate
//! does not cover the zonal name is refused by `check-config` and by `run --once` with exit 1
//! and one error line naming the host and the certificate's names, before any AWS resource is
//! created and with `server.properties` byte-identical; a covering wildcard passes.

use crate::common;

use common::*;

/// A PKCS12 keystore holding a self-signed certificate for `names` (2020 to 2099).
pub fn pkcs12(names: &[&str], password: &str) -> Vec<u8> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let chain = p12_keystore::PrivateKeyChain::new(
        key.serialize_der(),
        [1u8; 20],
        [p12_keystore::Certificate::from_der(cert.der()).unwrap()],
    );
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry("kafka", p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
    store.writer(password).write().unwrap()
}

fn tls_properties(keystore: &std::path::Path) -> String {
    SERVER_PROPERTIES.replace(
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n",
        &format!(
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,PRIVATELINK:SSL\n\
             ssl.keystore.type=PKCS12\nssl.keystore.location={}\nssl.keystore.password=changeit\n",
            keystore.display()
        ),
    )
}

fn error_lines(out: &std::process::Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.starts_with("error: ") || l.contains(" ERROR "))
        .map(str::to_string)
        .collect()
}

#[test]
fn an_uncovered_certificate_is_refused_before_anything_is_created() {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    let host = &world.hosts[0];
    let keystore = host.dir.join("broker.p12");
    std::fs::write(
        &keystore,
        pkcs12(
            &["*.other.internal", "broker1.example.internal"],
            "changeit",
        ),
    )
    .unwrap();
    let text = tls_properties(&keystore);
    std::fs::write(host.properties(), &text).unwrap();
    let names = "it names *.other.internal, broker1.example.internal";
    let at = format!(
        "error: certificate check: {} (listener PRIVATELINK): does not cover",
        keystore.display()
    );

    // check-config knows no AZ: the template is checked (a wildcard would cover every zone).
    let out = world.run(host, &["check-config"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lines = error_lines(&out);
    assert_eq!(
        lines,
        [format!(
            "{at} kafka-{{az_id}}.orders.example.internal; {names}"
        )],
        "{}",
        stderr(&out)
    );

    let out = world.run(host, &["run", "--once"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let line = last_error_line(&out).unwrap_or_else(|| panic!("{}", stderr(&out)));
    let zonal = format!("kafka-{}.orders.example.internal", host.az_id);
    assert!(
        line.contains(&format!("{} {zonal}; {names}", &at["error: ".len()..])),
        "{line}"
    );
    assert_eq!(host.read_properties(), text, "server.properties changed");
    assert!(!host.dir.join("server.properties.kplink.bak").exists());
    let w = world.wiring();
    assert!(w.listeners.is_empty(), "{:?}", w.listeners);
    assert!(w.groups.is_empty(), "{:?}", w.groups.keys());

    // A wildcard over the zonal names passes: check-config shows what it covers.
    std::fs::write(
        &keystore,
        pkcs12(&["*.orders.example.internal"], "changeit"),
    )
    .unwrap();
    let out = world.run(host, &["check-config"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(
        shown.contains("names *.orders.example.internal") && shown.contains("expires 2099-01-01"),
        "{shown}"
    );
    let out = world.run(host, &["run", "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
