//! The editor's boundaries, one test each: listener entries and protocol maps it refuses, edits
//! it refuses to make, and when a TLS listener lacks a keystore (cases cargo-mutants showed no
//! other test pinned down).

use super::*;

fn edit() -> ListenerEdit {
    ListenerEdit {
        name: "PRIVATELINK".into(),
        bind_port: 9094,
        advertised_host: "kafka-use1-az1.orders.example.internal".into(),
        advertised_port: 10003,
        security_protocol: "SSL".into(),
    }
}

fn refused(text: &str, edit: &ListenerEdit) -> String {
    apply_listener(text, edit)
        .expect_err("must be refused")
        .to_string()
}

#[test]
fn a_listener_port_must_be_digits() {
    for entry in [
        "PLAINTEXT://h:",
        "PLAINTEXT://h:9a92",
        "PLAINTEXT://h:+9092",
    ] {
        let err = refused(&format!("listeners={entry}\n"), &edit());
        assert!(err.contains("port is not a number"), "{entry}: {err}");
    }
    let err = refused("listeners=PLAINTEXT://h:99999\n", &edit());
    assert!(err.contains("port is not in 0-65535"), "{err}");
}

#[test]
fn a_protocol_map_entry_needs_a_name_and_a_protocol() {
    for map in ["PRIVATELINK:", ":SSL", " : ", "PLAINTEXT:PLAINTEXT,SSL"] {
        let text = format!("listeners=PLAINTEXT://:9092\nlistener.security.protocol.map={map}\n");
        let err = apply_listener(&text, &edit()).expect_err(map);
        assert!(
            matches!(err.reason, EditReason::MalformedProtocolMap { .. }),
            "{map}: {err}"
        );
    }
}

#[test]
fn an_edit_needs_a_host_and_a_protocol_name() {
    let text = "listeners=PLAINTEXT://:9092\n";
    let no_host = ListenerEdit {
        advertised_host: String::new(),
        ..edit()
    };
    assert!(refused(text, &no_host).contains("advertised host \"\""));
    for protocol in ["", "SSL;", "SASL SSL"] {
        let bad = ListenerEdit {
            security_protocol: protocol.into(),
            ..edit()
        };
        assert!(
            refused(text, &bad).contains("security protocol"),
            "{protocol:?}"
        );
    }
    let sasl = ListenerEdit {
        security_protocol: "SASL_SSL".into(),
        ..edit()
    };
    let out = apply_listener(text, &sasl).unwrap().unwrap();
    assert!(out.contains("PRIVATELINK:SASL_SSL"), "{out}");
}

/// `missing_keystore`: the listener's protocol comes from the file's map (its name compared
/// without case), else from the agent's setting; only SSL and SASL_SSL need a keystore, set for
/// the listener or broker-wide, as a location or a PEM chain, and not blank.
#[test]
fn a_tls_listener_without_a_keystore_is_named() {
    let map = |entry: &str| format!("listener.security.protocol.map=PLAINTEXT:PLAINTEXT,{entry}\n");
    let cases: Vec<(String, &str, bool)> = vec![
        (map("PRIVATELINK:SSL"), "PLAINTEXT", true),
        (map("privatelink:sasl_ssl"), "PLAINTEXT", true),
        (map("PRIVATELINK:PLAINTEXT"), "SSL", false),
        (map("OTHER:SSL"), "SASL_SSL", true),
        (map("OTHER:SSL"), "sasl_plaintext", false),
        (String::new(), "ssl", true),
        (String::new(), "PLAINTEXT", false),
        (
            format!(
                "{}ssl.keystore.location=/etc/kafka/broker.p12\n",
                map("PRIVATELINK:SSL")
            ),
            "PLAINTEXT",
            false,
        ),
        (
            "listener.name.privatelink.ssl.keystore.location=/etc/kafka/pl.jks\n".into(),
            "SSL",
            false,
        ),
        (
            "ssl.keystore.certificate.chain=-----BEGIN CERTIFICATE-----\n".into(),
            "SSL",
            false,
        ),
        ("ssl.keystore.location=   \n".into(), "SSL", true),
        (
            "listener.name.other.ssl.keystore.location=/etc/kafka/o.jks\n".into(),
            "SSL",
            true,
        ),
    ];
    for (text, default, missing) in cases {
        let got = missing_keystore(&text, "PRIVATELINK", default).unwrap();
        assert_eq!(
            got.is_some(),
            missing,
            "{text:?} default {default}: {got:?}"
        );
        if let Some(message) = got {
            assert!(
                message.starts_with("listener PRIVATELINK is SSL")
                    || message.starts_with("listener PRIVATELINK is SASL_SSL"),
                "{message}"
            );
            assert!(message.contains("listener.name.privatelink.ssl.keystore.location"));
        }
    }
}
