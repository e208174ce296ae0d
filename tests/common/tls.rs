//! TLS for tests/e2e_privatelink.rs: a test CA and broker keystores made at test time with the
//! `openssl` CLI (no private key is committed), and the broker's TLS listener played by
//! `tests/support/tls_terminator.py` in front of a plaintext tansu.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{start_server, stderr, Server};

/// What [`make`] wrote into its directory.
pub struct Certs {
    /// The CA that signed both broker certificates: the client's `ssl.ca.location`.
    pub ca: PathBuf,
    /// Another CA, which signed nothing the brokers serve: a client trusting only it must fail.
    pub other_ca: PathBuf,
    /// A PEM keystore (KIP-651): PKCS#8 key, then the certificate for `good_names`, then the CA.
    pub good_keystore: PathBuf,
    /// The same shape, signed by the same CA, for `bad_names` only.
    pub bad_keystore: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl (the CLI makes the test certificates)");
    assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
}

/// A CA named `name` (EC P-256, one day): `<name>.pem` and its key `<name>.key` in `dir`.
fn ca(dir: &Path, name: &str) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "1",
            "-subj",
            &format!("/CN=kplink test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
    dir.join(format!("{name}.pem"))
}

/// A server certificate for the DNS `names` signed by the CA `ca`, written as a PEM keystore
/// `<name>.keystore.pem` the way Kafka's file-based PEM keystore reads one (apache/kafka
/// `DefaultSslEngineFactory`: `FileBasedPemStore` reads the file as both the key and the chain;
/// `PemStore` wants exactly one `PRIVATE KEY` entry, PKCS#8, unencrypted when no
/// `ssl.key.password` is set, and the `CERTIFICATE` entries leaf first).
fn keystore(dir: &Path, ca: &str, name: &str, names: &[&str]) -> PathBuf {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let cert = format!("{name}.pem");
    let ext = format!("{name}.ext");
    let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    std::fs::write(
        dir.join(&ext),
        format!(
            "subjectAltName={}\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n",
            san.join(",")
        ),
    )
    .unwrap();
    // OpenSSL 3 writes a new key as PKCS#8 (`BEGIN PRIVATE KEY`).
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={}", names[0]),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-set_serial",
            &format!("{}", 2 + names.len()),
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ],
    );
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let text = format!(
        "{}{}{}",
        read(&key),
        read(&cert),
        read(&format!("{ca}.pem"))
    );
    assert_eq!(text.matches("-----BEGIN PRIVATE KEY-----").count(), 1);
    let path = dir.join(format!("{name}.keystore.pem"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A CA, a broker keystore for `good_names`, one for `bad_names` (same CA), and another CA.
pub fn make(dir: &Path, good_names: &[&str], bad_names: &[&str]) -> Certs {
    std::fs::create_dir_all(dir).unwrap();
    let ca_pem = ca(dir, "ca");
    let other_ca = ca(dir, "other-ca");
    Certs {
        good_keystore: keystore(dir, "ca", "broker", good_names),
        bad_keystore: keystore(dir, "ca", "broker-other-names", bad_names),
        ca: ca_pem,
        other_ca,
    }
}

/// The broker's TLS listener as its `server.properties` configures it (port of the `listeners`
/// entry named `listener`, its PEM keystore), on `host`, forwarding plaintext to `backend`;
/// each connection logged to `log` (see tests/support/tls_terminator.py).
pub fn start_terminator(
    properties: &Path,
    listener: &str,
    host: &str,
    backend: &str,
    log: &Path,
) -> Server {
    start_server(
        "tls_terminator.py",
        &[
            "--properties",
            properties.to_str().unwrap(),
            "--listener-name",
            listener,
            "--host",
            host,
            "--backend",
            backend,
            "--log",
            log.to_str().unwrap(),
        ],
    )
}
