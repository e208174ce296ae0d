//! A minimal reader of Java's proprietary JKS keystore format: the certificate chains of its
//! entries, and the integrity check the keystore password guards.
//!
//! Hand-written on purpose: the JKS crate on the registry (`jks` 0.3, one author, few users)
//! brings its own PKCS12 stack by default, and the pre-flight needs only the certificate
//! chains, which JKS stores unencrypted: about 100 lines we can own. Checked against files
//! written by OpenJDK 17's keytool (`-storetype JKS`, and `-importkeystore` from PKCS12).
//!
//! The format, as `sun.security.provider.JavaKeyStore.engineLoad`/`engineStore` (OpenJDK)
//! read and write it, all integers big-endian:
//!
//! ```text
//! magic u32 = 0xFEEDFEED | version u32 (1 or 2) | count u32
//! count × entry:
//!   tag u32: 1 = private key entry, 2 = trusted certificate entry
//!   alias: UTF (u16 length + modified UTF-8) | timestamp u64 (ms)
//!   tag 1: key u32 length + bytes (an EncryptedPrivateKeyInfo, not read here)
//!          chain count u32, then count × certificate
//!   tag 2: one certificate
//!   certificate: (version 2 only) type UTF ("X.509") | u32 length + DER
//! digest: 20 bytes, SHA-1 over (password as UTF-16BE, "Mighty Aphrodite", every byte above)
//! ```

use sha1::{Digest, Sha1};

/// The magic number of a JKS file.
pub(crate) const MAGIC: u32 = 0xFEED_FEED;
/// The salt OpenJDK mixes into the integrity digest.
const WHITENER: &[u8] = b"Mighty Aphrodite";
/// Length of the trailing SHA-1 digest.
const DIGEST_LEN: usize = 20;

/// What is wrong with a JKS file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JksError {
    /// Not a JKS file, or cut short.
    #[error("not a readable JKS keystore: {0}")]
    Malformed(String),
    /// The digest does not match: Java's own words for a wrong password or a changed file.
    #[error("keystore was tampered with, or password was incorrect (ssl.keystore.password)")]
    Integrity,
}

/// A JKS keystore's entries: the chain of each private key entry (leaf first), in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Jks {
    /// One chain per private key entry, each certificate DER.
    pub key_chains: Vec<Vec<Vec<u8>>>,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], JksError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end =
            end.ok_or_else(|| JksError::Malformed(format!("cut short at byte {}", self.at)))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u16(&mut self) -> Result<usize, JksError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn u32(&mut self) -> Result<u32, JksError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn utf(&mut self) -> Result<&'a [u8], JksError> {
        let n = self.u16()?;
        self.take(n)
    }
    fn blob(&mut self) -> Result<&'a [u8], JksError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn certificate(&mut self, version: u32) -> Result<Vec<u8>, JksError> {
        if version == 2 {
            self.utf()?;
        }
        Ok(self.blob()?.to_vec())
    }
}

/// Reads `bytes` as JKS; verifies the integrity digest when `password` is given (the
/// certificates are readable without it).
pub(crate) fn read(bytes: &[u8], password: Option<&str>) -> Result<Jks, JksError> {
    let mut c = Cursor { bytes, at: 0 };
    if c.u32()? != MAGIC {
        return Err(JksError::Malformed("no JKS magic number 0xFEEDFEED".into()));
    }
    let version = c.u32()?;
    if version != 1 && version != 2 {
        return Err(JksError::Malformed(format!("version {version}")));
    }
    let mut jks = Jks::default();
    for _ in 0..c.u32()? {
        let tag = c.u32()?;
        c.utf()?;
        c.take(8)?;
        match tag {
            1 => {
                c.blob()?;
                let n = c.u32()?;
                let chain = (0..n)
                    .map(|_| c.certificate(version))
                    .collect::<Result<Vec<_>, _>>()?;
                jks.key_chains.push(chain);
            }
            2 => {
                c.certificate(version)?;
            }
            other => return Err(JksError::Malformed(format!("entry tag {other}"))),
        }
    }
    let signed = c.at;
    let digest = c.take(DIGEST_LEN)?;
    if let Some(password) = password {
        if digest != integrity_digest(password, &bytes[..signed]).as_slice() {
            return Err(JksError::Integrity);
        }
    }
    Ok(jks)
}

/// The digest JKS appends: SHA-1 over the password (UTF-16BE), the whitener and `body`.
pub(crate) fn integrity_digest(password: &str, body: &[u8]) -> [u8; DIGEST_LEN] {
    let mut sha = Sha1::new();
    for unit in password.encode_utf16() {
        sha.update(unit.to_be_bytes());
    }
    sha.update(WHITENER);
    sha.update(body);
    sha.finalize().into()
}
