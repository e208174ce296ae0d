//! kplink-agent: wires a self-managed Kafka broker on EC2 into an AWS PrivateLink NLB.
//!
//! Each broker gets its own NLB port (a listener forwarding to a target group that holds only that
//! broker), joins the cluster's bootstrap target group, and advertises itself in
//! `server.properties` under a zonal name. The crate is a library with a thin binary
//! (`src/bin/kplink-agent.rs`): [`cli`] parses commands and builds the real adapters once per
//! process (AWS clients via [`aws::adapters`], one [`kafka::RdKafka`] admin client, the
//! [`restart::CommandService`]); [`reconcile`] runs passes over the side effect traits
//! ([`metadata::InstanceMetadata`], [`nlb::LoadBalancer`], [`ec2::InstanceTags`],
//! [`kafka::KafkaCluster`], [`restart::ServiceManager`]); [`daemon`] loops over passes with the
//! adapters it is handed and never depends on [`cli`]; the decisions live in pure modules
//! ([`plan`], [`registry`], [`broker_id`], [`properties`], [`lifecycle`], and the daemon's
//! [`daemon::LoopState::after_pass`]).
//!
//! ## Module map, in pipeline order
//!
//! No circle between these modules, no non-test file over 600 lines, no function over 80 lines
//! (`src/architecture_tests.rs` reads the tree and fails otherwise). Only what the binary
//! (`cli`) and the integration tests use is `pub`; the rest is `pub(crate)`, and the lints in
//! `Cargo.toml` keep it so (`unreachable_pub`), with no `unwrap`/`expect` outside tests and no
//! stdout outside [`cli`].
//!
//! | stage | modules |
//! |---|---|
//! | configure | [`config`] (typed `agent.toml`), [`cli`] (commands, adapters built once), [`exit`] (exit codes) |
//! | discover | [`metadata`] (IMDSv2 identity), [`lifecycle`] (staying or leaving), [`broker_id`], [`ec2`] (tag fallback), [`node`] (ZooKeeper/KRaft/controller-only) |
//! | claim | [`registry`] (group names, port candidates), [`nlb`] (the `LoadBalancer` seam and its ELBv2 adapter), [`compat`] (release 0.1's lock listener and group names, to delete in one go) |
//! | plan | [`plan`] (pure: observed → steps; who this host is, port candidates), [`model`] (the pass's error, progress, report, agent seams), [`checks`] (once-per-process NLB checks), [`tls`] (the certificate pre-flight: the keystore's leaf certificate covers the advertised names), [`reconcile`] (observe, `pass`, `decommission`) |
//! | wire and edit the file | [`execute`] (one small executor per step), [`properties`] (byte-preserving editor) |
//! | make effective | [`kafka`] (admin client; FFI in `kafka/ffi.rs`), [`restart`] (decide, gates, lock, command) |
//! | keep it so | [`daemon`] (the loop), [`steady`] (the converged state checked within the API budget), [`metrics`] (Prometheus), [`clock`] |
//! | consumer side | [`consumer_dns`] (`consumer-dns`: CNAMEs for an interface endpoint in the consumer's private zone; pure planner in `consumer_dns::plan`) |
//! | test seams | `fakes` (in-process NLB/IMDS/tags with AWS's rules), [`aws`] (real SDK clients), [`backoff`] (every AWS call: counted, throttling ridden through until the pass deadline) |

// configure
pub mod cli;
pub mod config;
pub(crate) mod exit;

// discover
pub(crate) mod broker_id;
pub(crate) mod ec2;
pub(crate) mod lifecycle;
pub(crate) mod metadata;
pub mod node;

// claim
pub(crate) mod compat;
pub(crate) mod idle;
pub mod nlb;
pub mod registry;

// plan
pub(crate) mod checks;
pub(crate) mod model;
pub(crate) mod plan;
pub(crate) mod reconcile;
pub(crate) mod tls;

// wire and edit the file
pub(crate) mod execute;
pub(crate) mod kafka_rules;
pub mod properties;

// make effective
pub mod kafka;
pub mod restart;

// keep it so
pub mod clock;
pub(crate) mod connection;
pub(crate) mod daemon;
pub(crate) mod metrics;
pub(crate) mod steady;

// consumer side (another account): the private DNS for an interface endpoint
pub(crate) mod consumer_dns;

// seams: real AWS clients (calls paced by the account's API budget) and in-process fakes
#[cfg(test)]
mod architecture_tests;
pub(crate) mod aws;
pub(crate) mod backoff;
#[cfg(test)]
mod config_boundary_tests;
#[cfg(test)]
pub(crate) mod fakes;
#[cfg(test)]
mod pass_tests;
#[cfg(test)]
mod shard_tests;
