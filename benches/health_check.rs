//! The restart health check at scale: what one check costs on a cluster of 10,000 partitions.
//!
//! `cargo bench --bench health_check [-- --partitions 10000 --topics 100 --rounds 5]` starts a
//! tansu broker (tests/support/tansu.py), creates `--topics` topics holding `--partitions`
//! partitions in all, then times, `--rounds` times each:
//!
//! - the gate's observation, `KafkaCluster::snapshot` (one Metadata of every topic, one
//!   DescribeConfigs of a broker, one DescribeConfigs of every topic), and the pure `gate()` on
//!   it;
//! - the post-restart poll, `KafkaCluster::partitions` (Metadata only);
//! - `gate()` on a scripted 12-broker, replication-factor-3 snapshot with the same number of
//!   partitions (tansu is one broker: every partition has one replica).
//!
//! It prints the numbers; nothing is asserted (speed targets live here, not in tests). Under
//! `cargo test --all-targets` (no `--bench` argument) it only says how to run it.

// A bench prints its numbers and may panic on a broken set-up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kplink_agent::kafka::{
    BrokerNode, ClusterSnapshot, KafkaCluster, PartitionState, RdKafka, TopicState,
};
use kplink_agent::restart::gate;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Median and max of `samples`.
fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    format!(
        "median {:.1} ms, max {:.1} ms over {}",
        samples[samples.len() / 2].as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
        samples.len()
    )
}

fn scripted(partitions: usize, topics: usize) -> ClusterSnapshot {
    let brokers: Vec<i32> = (1..=12).collect();
    let per_topic = partitions.div_ceil(topics);
    ClusterSnapshot {
        brokers: brokers
            .iter()
            .map(|&id| BrokerNode {
                id,
                host: format!("b{id}"),
                port: 9092,
            })
            .collect(),
        controller_id: Some(1),
        topics: (0..topics)
            .map(|t| TopicState {
                name: format!("t{t}"),
                internal: false,
                min_insync_replicas: Some(2),
                partitions: (0..per_topic as i32)
                    .map(|p| {
                        let r: Vec<i32> = (0..3).map(|k| (t as i32 + p + k) % 12 + 1).collect();
                        PartitionState {
                            topic: format!("t{t}"),
                            partition: p,
                            leader: r[0],
                            replicas: r.clone(),
                            isr: r,
                        }
                    })
                    .collect(),
            })
            .collect(),
        default_min_insync_replicas: 2,
        unreadable_configs: Vec::new(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("health_check: a benchmark; run it with `cargo bench --bench health_check`");
        return;
    }
    let partitions = arg(&args, "--partitions", 10_000);
    let topics = arg(&args, "--topics", 100).max(1);
    let rounds = arg(&args, "--rounds", 5).max(1);
    let per_topic = partitions.div_ceil(topics);

    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("tansu.pid");
    let port = free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tansu.py");
    let started = Command::new("python3")
        .arg(&script)
        .args(["start", "--port", &port.to_string()])
        .args(["--advertised", &format!("127.0.0.1:{port}"), "--pidfile"])
        .arg(&pidfile)
        .status()
        .expect("run tansu.py");
    assert!(started.success(), "tansu.py start failed");
    let bootstrap = format!("127.0.0.1:{port}");

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("admin client");
    let made = Instant::now();
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(120)));
    for chunk in (0..topics).collect::<Vec<_>>().chunks(20) {
        let new: Vec<NewTopic<'_>> = Vec::new();
        let names: Vec<String> = chunk.iter().map(|t| format!("bench-{t}")).collect();
        let mut new = new;
        for name in &names {
            new.push(NewTopic::new(
                name,
                per_topic as i32,
                TopicReplication::Fixed(1),
            ));
        }
        for r in admin
            .create_topics(&new, &opts)
            .await
            .expect("CreateTopics")
        {
            r.unwrap_or_else(|(t, e)| panic!("create {t}: {e:?}"));
        }
    }
    println!(
        "created {topics} topics x {per_topic} partitions = {} partitions in {:.1} s (tansu, one broker)",
        topics * per_topic,
        made.elapsed().as_secs_f64()
    );

    let kafka = RdKafka::new(&bootstrap, &BTreeMap::new())
        .expect("client")
        .with_timeout(Duration::from_secs(60));
    let expected: BTreeSet<i32> = BTreeSet::new();
    let (mut snap_t, mut gate_t, mut part_t) = (Vec::new(), Vec::new(), Vec::new());
    let mut seen = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        let snapshot = kafka.snapshot().await.expect("snapshot");
        snap_t.push(t.elapsed());
        seen = snapshot.topics.iter().map(|t| t.partitions.len()).sum();
        let t = Instant::now();
        let report = gate(&snapshot, 111, &expected);
        gate_t.push(t.elapsed());
        std::hint::black_box(report);
        let t = Instant::now();
        std::hint::black_box(kafka.partitions().await.expect("partitions"));
        part_t.push(t.elapsed());
    }
    println!("partitions seen by a check: {seen}");
    println!(
        "gate observation (snapshot: Metadata + 2 DescribeConfigs): {}",
        summary(&mut snap_t)
    );
    println!("gate() on it (pure): {}", summary(&mut gate_t));
    println!(
        "post-restart poll (partitions: Metadata only): {}",
        summary(&mut part_t)
    );

    let big = scripted(partitions, topics);
    let all: BTreeSet<i32> = big.brokers.iter().map(|b| b.id).collect();
    let mut scripted_t = Vec::new();
    for _ in 0..rounds.max(20) {
        let t = Instant::now();
        std::hint::black_box(gate(&big, 1, &all));
        scripted_t.push(t.elapsed());
    }
    println!(
        "gate() on a scripted 12-broker RF-3 snapshot of {} partitions: {}",
        big.topics.iter().map(|t| t.partitions.len()).sum::<usize>(),
        summary(&mut scripted_t)
    );

    let _ = Command::new("python3")
        .arg(&script)
        .args(["stop", "--pidfile"])
        .arg(&pidfile)
        .status();
}
