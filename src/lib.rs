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
//! (`src/architecture_tests.rs` reads the tree and fails otherwise).
//!
//! | stage | modules |
//! |---|---|
//! | configure | [`config`] (typed `agent.toml`), [`cli`] (commands, adapters built once), [`exit`] (exit codes) |
//! | discover | [`metadata`] (IMDSv2 identity), [`lifecycle`] (staying or leaving), [`broker_id`], [`ec2`] (tag fallback), [`node`] (ZooKeeper/KRaft/controller-only) |
//! | claim | [`registry`] (group names, port candidates), [`nlb`] (the `LoadBalancer` seam and its ELBv2 adapter) |
//! | plan | [`plan`] (pure: observed → steps; who this host is, port candidates), [`model`] (the pass's error, progress, report, agent seams), [`checks`] (once-per-process NLB checks), [`tls`] (the certificate pre-flight: the keystore's leaf certificate covers the advertised names), [`reconcile`] (observe, `pass`, `decommission`) |
//! | wire and edit the file | [`execute`] (one small executor per step), [`properties`] (byte-preserving editor) |
//! | make effective | [`kafka`] (admin client; FFI in `kafka/ffi.rs`), [`restart`] (decide, gates, lock, command) |
//! | keep it so | [`daemon`] (the loop), [`steady`] (the converged state checked within the API budget), [`metrics`] (Prometheus), [`clock`] |
//! | consumer side | [`consumer_dns`] (`consumer-dns`: CNAMEs for an interface endpoint in the consumer's private zone; pure planner in `consumer_dns::plan`) |
//! | test seams | `fakes` (in-process NLB/IMDS/tags with AWS's rules), [`aws`] (real SDK clients), [`backoff`] (every AWS call: counted, throttling ridden through until the pass deadline) |

// configure
pub mod cli;
pub mod config;
pub mod exit;

// discover
pub mod broker_id;
pub mod ec2;
pub mod lifecycle;
pub mod metadata;
pub mod node;

// claim
pub mod compat;
pub mod idle;
pub mod nlb;
pub mod registry;

// plan
pub mod checks;
pub mod model;
pub mod plan;
pub mod reconcile;
pub mod tls;

// wire and edit the file
pub mod execute;
pub mod kafka_rules;
pub mod properties;

// make effective
pub mod kafka;
pub mod restart;

// keep it so
pub mod clock;
pub mod connection;
pub mod daemon;
pub mod metrics;
pub mod steady;

// consumer side (another account): the private DNS for an interface endpoint
pub mod consumer_dns;

// seams: real AWS clients (calls paced by the account's API budget) and in-process fakes
#[cfg(test)]
mod architecture_tests;
pub mod aws;
pub mod backoff;
#[cfg(test)]
mod config_boundary_tests;
#[cfg(test)]
pub(crate) mod fakes;
#[cfg(test)]
mod pass_tests;
#[cfg(test)]
mod shard_tests;
