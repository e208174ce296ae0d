//! Every integration test in one crate, so the suite links once (issue 18: 19 crates, each linked
//! on its own, became one). Each file is a module named as before: `cargo test --test suite
//! restart::` runs what the `restart` test crate ran.

// Tests may unwrap, expect and print (a panic is a failed test), and their helpers are `pub`
// for the modules beside them: the crate's lints are for the agent's code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    unreachable_pub
)]

mod common;

mod bad_input;
mod cli_meta;
mod consistency;
mod consumer_dns;
mod daemon;
mod e2e_privatelink;
mod emulator_rules;
mod fuzz_inputs;
mod iam_policy;
mod kafka_tansu;
mod lifecycle;
mod nlb_contract;
mod provider_stack;
mod readme_walkthrough;
mod real_rules;
mod reliability;
mod restart;
mod shards;
mod systemd;
mod tls;
mod wiring;
