//! Reading the managed listener's keystore as Kafka would: which settings apply, and the
//! certificate chain of its key entry.
//!
//! Settings: each `ssl.keystore.*` key is looked up as `listener.name.<listener, lower-case>.`
//! plus the key first, then the broker-wide key (Kafka's per-listener override,
//! `AbstractConfig.valuesWithPrefixOverride`). `ssl.keystore.type` defaults to `JKS`, Kafka's
//! `SslConfigs.DEFAULT_SSL_KEYSTORE_TYPE` ("JKS"; its documentation lists "[JKS, PKCS12, PEM]"
//! as the types the default `ssl.engine.factory.class` supports; unchanged in Kafka 3.x and
//! 4.x). As in Java (`keystore.type.compat`, on by default since JDK 8u60), a `JKS` or
//! `PKCS12` type reads either format: the file's first bytes decide.
//!
//! Crates: PKCS12 through `p12-keystore` (pure Rust on the RustCrypto `pkcs12`/`cms`/`pkcs5`
//! crates; reads the PBES2/AES files of OpenSSL 3 and JDK 12+ keytool and, through its default
//! `pbes1` feature, older 3DES/RC2 ones; version 0.1.5 because later ones need Rust 1.85, above
//! this crate's `rust-version`); PEM blocks decoded here with `base64` (Kafka accepts a chain
//! on one line, `ssl.keystore.certificate.chain` continued over `\` lines, which line-based PEM
//! parsers refuse); JKS by the small reader in [`super::jks`].

use std::path::PathBuf;

use base64::Engine;

use crate::properties::Properties;

/// `ssl.keystore.type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `JKS` (Kafka's default).
    Jks,
    /// `PKCS12`.
    Pkcs12,
    /// `PEM`.
    Pem,
    /// Another Java keystore type (`JCEKS`, `BCFKS`, …): not read.
    Other(String),
}

/// `ssl.keystore.password` as the file has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Password {
    /// Not set.
    Missing,
    /// A literal password.
    Literal(String),
    /// A config provider reference (`${file:/path:key}`), resolved by Kafka at start-up only.
    Provider(String),
}

/// The keystore settings of one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Its type.
    pub kind: Kind,
    /// `ssl.keystore.location`.
    pub location: Option<PathBuf>,
    /// `ssl.keystore.certificate.chain` (PEM only, used when no location is set).
    pub inline_chain: Option<String>,
    /// `ssl.keystore.password`.
    pub password: Password,
}

/// What reading the keystore gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Read {
    /// The key entry's chain, leaf first, DER.
    Chain(Vec<Vec<u8>>),
    /// It could not be read for a reason that is not an error: why (for a warning).
    Unchecked(String),
}

impl Settings {
    /// The settings of listener `listener` in `props`; `None` when it has no keystore at all.
    pub(crate) fn of(props: &Properties, listener: &str) -> Option<Settings> {
        let prefix = format!("listener.name.{}.", listener.to_ascii_lowercase());
        let get = |key: &str| {
            [format!("{prefix}{key}"), key.to_string()]
                .iter()
                .find_map(|k| props.get(k).filter(|v| !v.trim().is_empty()))
                .map(|v| v.trim().to_string())
        };
        let kind = match get("ssl.keystore.type")
            .unwrap_or_else(|| "JKS".into())
            .to_ascii_uppercase()
            .as_str()
        {
            "JKS" => Kind::Jks,
            "PKCS12" => Kind::Pkcs12,
            "PEM" => Kind::Pem,
            other => Kind::Other(other.to_string()),
        };
        let location = get("ssl.keystore.location").map(PathBuf::from);
        let inline_chain = get("ssl.keystore.certificate.chain");
        if location.is_none() && inline_chain.is_none() {
            return None;
        }
        let password = match get("ssl.keystore.password") {
            None => Password::Missing,
            Some(p) if p.contains("${") => Password::Provider(p),
            Some(p) => Password::Literal(p),
        };
        Some(Settings {
            kind,
            location,
            inline_chain,
            password,
        })
    }

    /// Where the certificate comes from, for messages: the file, or the inline chain.
    pub(crate) fn source(&self) -> String {
        match &self.location {
            Some(path) => path.display().to_string(),
            None => "ssl.keystore.certificate.chain".to_string(),
        }
    }
}

/// Reads the certificate chain of `settings`' key entry. `Err` is the problem (a missing or
/// unreadable file, a wrong password, no key entry), for one error line.
pub(crate) fn read(settings: &Settings) -> Result<Read, String> {
    let Some(path) = &settings.location else {
        return match (&settings.kind, &settings.inline_chain) {
            (Kind::Pem, Some(chain)) => pem_chain(chain).map(Read::Chain),
            (kind, _) => Err(format!(
                "ssl.keystore.certificate.chain needs ssl.keystore.type PEM, not {kind:?}"
            )),
        };
    };
    if let Kind::Other(kind) = &settings.kind {
        return Ok(Read::Unchecked(format!(
            "ssl.keystore.type {kind} is not one the agent reads (JKS, PKCS12, PEM)"
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the keystore: {e}"))?;
    if settings.kind == Kind::Pem {
        let text = String::from_utf8_lossy(&bytes);
        return pem_chain(&text).map(Read::Chain);
    }
    let password = match &settings.password {
        Password::Literal(p) => Some(p.as_str()),
        Password::Provider(_) => None,
        Password::Missing => {
            return Err(
                "ssl.keystore.password is not set: Kafka refuses a keystore file without one"
                    .into(),
            )
        }
    };
    if bytes.starts_with(&super::jks::MAGIC.to_be_bytes()) {
        return jks_chain(&bytes, password).map(Read::Chain);
    }
    match password {
        Some(password) => pkcs12_chain(&bytes, password).map(Read::Chain),
        None => Ok(Read::Unchecked(unreadable_password(&settings.password))),
    }
}

fn unreadable_password(password: &Password) -> String {
    let reference = match password {
        Password::Provider(p) => p.as_str(),
        _ => "",
    };
    format!("ssl.keystore.password is a config provider reference ({reference}) the agent cannot resolve")
}

/// The chain of the first private key entry of a JKS file.
fn jks_chain(bytes: &[u8], password: Option<&str>) -> Result<Vec<Vec<u8>>, String> {
    let jks = super::jks::read(bytes, password).map_err(|e| e.to_string())?;
    jks.key_chains
        .into_iter()
        .find(|c| !c.is_empty())
        .ok_or_else(|| "the keystore holds no private key entry with a certificate".into())
}

/// The chain of the private key entry of a PKCS12 file.
fn pkcs12_chain(bytes: &[u8], password: &str) -> Result<Vec<Vec<u8>>, String> {
    let store = p12_keystore::KeyStore::from_pkcs12(bytes, password).map_err(|e| match e {
        p12_keystore::error::Error::MacError(_) => {
            "wrong password (ssl.keystore.password): the PKCS12 integrity check failed".to_string()
        }
        other => format!("not a readable PKCS12 keystore: {other}"),
    })?;
    let (_, chain) = store
        .private_key_chain()
        .ok_or("the keystore holds no private key entry with a certificate")?;
    Ok(chain.chain().iter().map(|c| c.as_der().to_vec()).collect())
}

/// The certificates of a PEM text, in order (private key blocks skipped). Whitespace inside a
/// block is ignored, as Kafka's `PemStore` does.
pub(crate) fn pem_chain(text: &str) -> Result<Vec<Vec<u8>>, String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let body = &rest[start + BEGIN.len()..];
        let end = body.find(END).ok_or("a PEM certificate has no END line")?;
        let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("a PEM certificate is not valid base64: {e}"))?;
        out.push(der);
        rest = &body[end + END.len()..];
    }
    if out.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) found".into());
    }
    Ok(out)
}
