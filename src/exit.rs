//! Process exit codes (public contract), in one place for every command: `run --once` 0 when the
//! broker is fully wired, 1 otherwise; `plan` and `consumer-dns` 0 nothing to do,
//! [`CHANGES_PENDING`] changes pending, 1 error; `check-config` 0, 1 when the certificate
//! pre-flight refuses (see [`crate::tls`]), or [`CONFIG`]; `check-properties` 0 Kafka would start
//! on the file, 1 it would refuse. Any other command exits [`CONFIG`] when the config file is
//! invalid; every command [`USAGE`] on a usage error.

/// An invalid configuration (sysexits EX_CONFIG).
pub const CONFIG: u8 = 78;
/// A usage error (sysexits EX_USAGE).
pub const USAGE: u8 = 64;
/// `plan`, `consumer-dns`: changes are pending.
pub const CHANGES_PENDING: u8 = 2;
