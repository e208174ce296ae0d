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

pub mod aws;
pub mod broker_id;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod ec2;
pub mod execute;
pub mod fakes;
pub mod kafka;
pub mod lifecycle;
pub mod metadata;
pub mod metrics;
pub mod nlb;
pub mod node;
#[cfg(test)]
mod pass_tests;
pub mod plan;
pub mod properties;
pub mod reconcile;
pub mod registry;
pub mod restart;
