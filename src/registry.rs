//! The port registry: how brokers claim NLB ports, with the NLB itself as the shared store.
//!
//! A broker's claim is a listener in `nlb.port_range` forwarding to that broker's dedicated target
//! group. Target group names are derived deterministically from (cluster, NLB, broker id), so a
//! listener's forward target tells whose claim it is without extra calls, and the same broker id
//! always finds its port again. The NLB is part of the name because a target group can forward
//! for one load balancer only (ELBv2: `TargetGroupAssociationLimit`) and CreateTargetGroup returns
//! an existing group of the same name and settings: with names per cluster only, the same cluster
//! on a second NLB (blue/green migration, staging and prod in one account) would get the first
//! NLB's groups back. Names from release 0.1 (`kp-<cluster>-b<id>`, without the NLB) are still
//! recognized as claims on the NLB that holds them, so upgrading moves nothing. Claiming is CreateListener on a free port: ELBv2 rejects a second listener on a
//! port (`DuplicateListener`), which makes the claim atomic across hosts. Everything here is pure.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use rand::seq::SliceRandom;
use rand::Rng;

/// ELBv2's limit on target group names.
pub const MAX_TARGET_GROUP_NAME: usize = 32;
pub(crate) const PREFIX: &str = "kp-";
/// Longest cluster part that still fits the 0.1 name `kp-<cluster>-b<10 digits>`.
const MAX_CLUSTER_PART: usize = MAX_TARGET_GROUP_NAME - PREFIX.len() - "-b".len() - 10;
/// Longest readable cluster part of `kp-<cluster>-<hash>-b<10 digits>`.
const MAX_HEAD: usize = MAX_TARGET_GROUP_NAME - PREFIX.len() - "-hhhh".len() - "-b".len() - 10;

/// Tag key naming the cluster on every resource the agent creates.
pub const TAG_CLUSTER: &str = "kplink:cluster";
/// Tag key naming the broker id on a dedicated target group and its listener.
pub const TAG_BROKER_ID: &str = "kplink:broker-id";
/// Tag key naming the role (`broker` or `bootstrap`).
pub const TAG_ROLE: &str = "kplink:role";

/// Who owns a resource by its tags, when it is not `cluster`: `cluster X`, or a note that it has
/// no cluster tag. `None`: it is this cluster's. The one rule for listeners and groups the agent
/// finds on ports it uses (bootstrap, restart lock).
pub fn foreign_owner(
    tags: &std::collections::BTreeMap<String, String>,
    cluster: &str,
) -> Option<String> {
    match tags.get(TAG_CLUSTER) {
        Some(c) if c == cluster => None,
        Some(c) => Some(format!("cluster {c}")),
        None => Some(format!("no cluster (no {TAG_CLUSTER} tag)")),
    }
}

/// The cluster part of target group names: the cluster itself when it is already a clean name
/// that fits, else a truncated form plus a stable hash of the full name so that clusters sharing
/// a long prefix never share names.
pub fn cluster_slug(cluster: &str) -> String {
    let clean: String = cluster
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let lossless = clean.len() <= MAX_CLUSTER_PART
        && clean == cluster.to_ascii_lowercase()
        && !clean.starts_with('-')
        && !clean.ends_with('-')
        && !clean.contains("--");
    if lossless {
        return clean;
    }
    let mut squashed = String::new();
    for c in clean.chars() {
        if !(c == '-' && (squashed.is_empty() || squashed.ends_with('-'))) {
            squashed.push(c);
        }
    }
    let head: String = squashed.chars().take(MAX_CLUSTER_PART - 5).collect();
    let head = head.trim_matches('-');
    let hash = fnv1a(cluster.as_bytes()) & 0xffff;
    if head.is_empty() {
        format!("c{hash:04x}")
    } else {
        format!("{head}-{hash:04x}")
    }
}

// Hand-written because std's hasher is not stable across Rust releases and names must never change.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The part of every group name of `cluster` on the NLB `lb_arn`: a readable head of the cluster
/// name and 4 hex digits of a stable hash of (cluster, NLB ARN), e.g. `orders-5c1e`. Two clusters
/// or NLBs sharing a name would need a 16-bit hash collision to share names, and even then the
/// agent refuses a group tagged for another cluster or attached to another load balancer.
pub fn group_stem(cluster: &str, lb_arn: &str) -> String {
    let key = format!("{cluster}\n{lb_arn}");
    format!(
        "{}-{:04x}",
        name_head(cluster),
        fnv1a(key.as_bytes()) & 0xffff
    )
}

/// The readable head of group names: the cluster lowercased, other characters as single `-`, at
/// most [`MAX_HEAD`] characters, `c` when nothing is left.
fn name_head(cluster: &str) -> String {
    let mut head = String::new();
    for c in cluster.chars() {
        let c = if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '-'
        };
        if !(c == '-' && (head.is_empty() || head.ends_with('-'))) {
            head.push(c);
        }
    }
    let head: String = head.chars().take(MAX_HEAD).collect();
    let head = head.trim_matches('-');
    if head.is_empty() { "c" } else { head }.to_string()
}

/// Name of the cluster's restart lock target group, e.g. `kp-orders-50be8b4c-lock`: one lock per
/// cluster whatever its NLBs, so the name depends on the cluster only (the readable head and 8 hex
/// digits of a stable hash of the whole cluster name; at most 29 characters). 32 bits rather
/// than the 16 of the other names: two clusters sharing a name would share one lock (safe, but
/// their restarts would wait for each other).
pub fn lock_group_name(cluster: &str) -> String {
    format!(
        "{PREFIX}{}-{:08x}-lock",
        name_head(cluster),
        fnv1a(cluster.as_bytes()) & 0xffff_ffff
    )
}

/// Name of the dedicated target group of `broker_id` on `lb_arn`, e.g. `kp-orders-5c1e-b3`.
pub fn dedicated_group_name(cluster: &str, lb_arn: &str, broker_id: i32) -> String {
    format!("{PREFIX}{}-b{broker_id}", group_stem(cluster, lb_arn))
}

/// The broker id whose dedicated group on `lb_arn` is `name` under this release's name, if any
/// (0.1's names too: [`crate::compat::broker_id_from_group`]).
pub fn broker_id_from_group(cluster: &str, lb_arn: &str, name: &str) -> Option<i32> {
    let prefix = format!("{PREFIX}{}-b", group_stem(cluster, lb_arn));
    let id = name.strip_prefix(&prefix)?.parse::<i32>().ok()?;
    (id >= 0 && dedicated_group_name(cluster, lb_arn, id) == name).then_some(id)
}

/// Name of the cluster's bootstrap target group on `lb_arn`, e.g. `kp-orders-5c1e-boot`.
pub fn bootstrap_group_name(cluster: &str, lb_arn: &str) -> String {
    format!("{PREFIX}{}-boot", group_stem(cluster, lb_arn))
}

/// The NLB a new claim of `broker_id` tries first, of `shards` NLBs: spread by broker id, so a
/// fleet booting at once splits evenly over the NLBs instead of all racing for the first one
/// (every host would read it, collide on it and move on, costing the account's API budget).
pub fn spread_shard(broker_id: i32, shards: usize) -> usize {
    (broker_id.unsigned_abs() as usize) % shards.max(1)
}

/// The order in which a new claim of `broker_id` looks at `shards` NLBs: its spread NLB first,
/// then the next ones round the list (the same order every time, so a replacement of a broker
/// looks where the broker it replaces claimed).
pub fn shard_order(broker_id: i32, shards: usize) -> impl Iterator<Item = usize> {
    let first = spread_shard(broker_id, shards);
    (0..shards).map(move |i| (first + i) % shards)
}

/// The broker's preferred port on its NLB: spread by broker id so that brokers with distinct ids
/// (usually consecutive) booting together pick distinct first candidates and never collide. With
/// several NLBs, consecutive ids are dealt round the NLBs first ([`spread_shard`]), so the port
/// counts the broker's turn on its NLB: ids 0..3n over n NLBs take ports 0, 1, 2 of each.
pub fn preferred_port(range: &RangeInclusive<u16>, broker_id: i32, shards: usize) -> u16 {
    let size = u32::from(*range.end() - *range.start()) + 1;
    let turn = broker_id.unsigned_abs() / (shards.max(1) as u32);
    let offset = (turn % size) as u16;
    *range.start() + offset
}

/// Ports to try, in order: `keep` (the port `server.properties` already advertises: claiming it
/// again after drift spares clients a new address and Kafka a restart) if free and in range, then
/// the preferred port if free, then the other free ports in random order (random rather than
/// ascending so that hosts that lost a race do not all collide again on the next port up).
pub fn candidates(
    range: &RangeInclusive<u16>,
    occupied: &BTreeSet<u16>,
    broker_id: i32,
    shards: usize,
    keep: Option<u16>,
    rng: &mut impl Rng,
) -> Vec<u16> {
    let preferred = preferred_port(range, broker_id, shards);
    let first: Vec<u16> = keep
        .filter(|p| range.contains(p))
        .into_iter()
        .chain([preferred])
        .filter(|p| !occupied.contains(p))
        .fold(Vec::new(), |mut v, p| {
            if !v.contains(&p) {
                v.push(p);
            }
            v
        });
    let mut rest: Vec<u16> = range
        .clone()
        .filter(|p| !first.contains(p) && !occupied.contains(p))
        .collect();
    rest.shuffle(rng);
    first.into_iter().chain(rest).collect()
}

/// The seed of a host's random port order: stable per instance, so `plan` and `run` (separate
/// processes) try the same ports in the same order, and different per instance, so hosts that
/// collided once do not collide again.
pub fn host_seed(instance_id: &str) -> u64 {
    fnv1a(instance_id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const LB: &str =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/kafka/50dc6c495c0c9188";
    const LB2: &str =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/kafka-green/0123456789abcdef";

    #[test]
    fn names_fit_and_are_stable() {
        // Pinned: a name that changed between releases would orphan every claim.
        assert_eq!(dedicated_group_name("orders", LB, 3), "kp-orders-a2cd-b3");
        assert_eq!(bootstrap_group_name("orders", LB), "kp-orders-a2cd-boot");
        assert_eq!(dedicated_group_name("Orders", LB, 3), "kp-orders-196d-b3");
        let long = dedicated_group_name("payments-prod-eu", LB, i32::MAX);
        assert_eq!(long.len(), MAX_TARGET_GROUP_NAME, "{long}");
        assert!(long.starts_with("kp-payments-pro-"), "{long}");
        // Same cluster, another NLB: other names (a group serves one load balancer).
        assert_ne!(
            dedicated_group_name("orders", LB, 3),
            dedicated_group_name("orders", LB2, 3)
        );
        assert_ne!(
            bootstrap_group_name("orders", LB),
            bootstrap_group_name("orders", LB2)
        );
        // 0.1 names: `crate::compat`'s tests.
        for cluster in [
            "a.very_long.cluster-name-that-goes-on",
            "x__y",
            "-lead",
            "trail-",
            "é",
        ] {
            for name in [
                dedicated_group_name(cluster, LB, i32::MAX),
                bootstrap_group_name(cluster, LB),
            ] {
                assert!(name.len() <= MAX_TARGET_GROUP_NAME, "{name}");
                assert!(!name.contains("--"), "{name}");
                assert!(
                    name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                    "{name}"
                );
            }
            assert_eq!(
                dedicated_group_name(cluster, LB, i32::MAX),
                dedicated_group_name(cluster, LB, i32::MAX)
            );
        }
        // Long clusters sharing a prefix still get distinct names.
        assert_ne!(
            cluster_slug("analytics-platform-prod-1"),
            cluster_slug("analytics-platform-prod-2")
        );
        assert_ne!(
            group_stem("analytics-platform-prod-1", LB),
            group_stem("analytics-platform-prod-2", LB)
        );
    }

    #[test]
    fn each_host_has_its_own_stable_seed() {
        let a = host_seed("i-0123456789abcdef0");
        assert_eq!(a, host_seed("i-0123456789abcdef0"));
        let seeds: BTreeSet<u64> = (0..50).map(|i| host_seed(&format!("i-{i:017x}"))).collect();
        assert_eq!(seeds.len(), 50, "hosts share a port order");
        assert!(!seeds.contains(&0) && !seeds.contains(&1));
    }

    #[test]
    fn a_slug_squashes_dashes_and_fills_its_part_exactly() {
        let hex = |s: &str| s.len() == 4 && s.chars().all(|c| c.is_ascii_hexdigit());
        // Not lossless (a run of dashes): squashed, then the hash.
        let slug = cluster_slug("Orders__Prod");
        let (head, hash) = slug.rsplit_once('-').unwrap();
        assert_eq!(head, "orders-prod");
        assert!(hex(hash), "{slug}");
        // Leading dashes go; nothing left but dashes: `c` and the hash.
        assert!(cluster_slug("__x").starts_with("x-"));
        let none = cluster_slug("___");
        assert!(none.starts_with('c') && hex(&none[1..]), "{none}");
        // A long name keeps as much of itself as fits, the hash included.
        let long = cluster_slug(&"a".repeat(60));
        assert_eq!(long.len(), MAX_CLUSTER_PART, "{long}");
        assert!(long.starts_with(&"a".repeat(MAX_CLUSTER_PART - 5)));
    }

    #[test]
    fn the_lock_group_name_is_per_cluster_and_stable() {
        // Pinned: a changed name would let an upgraded agent miss a lock an older one holds.
        // One per cluster, whatever the NLB; never a claim or a bootstrap name.
        assert_eq!(lock_group_name("orders"), "kp-orders-50be8b4c-lock");
        assert_ne!(lock_group_name("orders"), lock_group_name("Orders"));
        assert!(lock_group_name("orders").starts_with("kp-orders-"));
        assert!(lock_group_name("orders").ends_with("-lock"));
        assert_eq!(
            broker_id_from_group("orders", LB, &lock_group_name("orders")),
            None
        );
        for cluster in [
            "a.very_long.cluster-name-that-goes-on",
            "x__y",
            "-lead",
            "é",
        ] {
            let name = lock_group_name(cluster);
            assert!(name.len() <= MAX_TARGET_GROUP_NAME, "{name}");
            assert!(!name.contains("--"), "{name}");
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "{name}"
            );
        }
    }

    #[test]
    fn broker_ids_come_back_from_group_names() {
        // 0.1's names are `crate::compat`'s.
        assert_eq!(broker_id_from_group("orders", LB, "kp-orders-b3"), None);
        assert_eq!(
            broker_id_from_group("orders", LB, &dedicated_group_name("orders", LB, 3)),
            Some(3)
        );
        // Another NLB's group is not a claim here.
        assert_eq!(
            broker_id_from_group("orders", LB, &dedicated_group_name("orders", LB2, 3)),
            None
        );
        assert_eq!(broker_id_from_group("orders", LB, "kp-orders-boot"), None);
        assert_eq!(
            broker_id_from_group("orders", LB, &bootstrap_group_name("orders", LB)),
            None
        );
        assert_eq!(broker_id_from_group("orders", LB, "kp-orders-b03"), None);
        assert_eq!(broker_id_from_group("orders", LB, "kp-payments-b3"), None);
        let long = "analytics-platform-prod-1";
        assert_eq!(
            broker_id_from_group(long, LB, &dedicated_group_name(long, LB, 42)),
            Some(42)
        );
        assert_eq!(
            crate::compat::broker_id_from_group(
                long,
                LB,
                &crate::compat::legacy_dedicated_group_name(long, 42)
            ),
            Some(42)
        );
    }

    #[test]
    fn preferred_port_spreads_consecutive_ids() {
        let range = 10001..=10049;
        assert_eq!(preferred_port(&range, 0, 1), 10001);
        assert_eq!(preferred_port(&range, 3, 1), 10004);
        assert_eq!(preferred_port(&range, 49, 1), 10001);
        // Three NLBs: ids 0, 1, 2 go to NLBs 0, 1, 2 on their first port; 3, 4, 5 on the second.
        assert_eq!(preferred_port(&range, 2, 3), 10001);
        assert_eq!(preferred_port(&range, 5, 3), 10002);
        assert_eq!(spread_shard(5, 3), 2);
        assert_eq!(shard_order(5, 3).collect::<Vec<_>>(), vec![2, 0, 1]);
        assert_eq!(shard_order(7, 1).collect::<Vec<_>>(), vec![0]);
        // 147 consecutive ids over 3 NLBs of 49 ports: every (NLB, port) taken exactly once.
        let slots: BTreeSet<(usize, u16)> = (0..147)
            .map(|id| (spread_shard(id, 3), preferred_port(&range, id, 3)))
            .collect();
        assert_eq!(slots.len(), 147);
        let ports: BTreeSet<u16> = (1..=49).map(|id| preferred_port(&range, id, 1)).collect();
        assert_eq!(ports.len(), 49);
    }

    #[test]
    fn candidates_skip_occupied_and_start_with_preferred() {
        let range = 10001..=10010;
        let mut rng = StdRng::seed_from_u64(7);
        let occupied: BTreeSet<u16> = [10002, 10005].into();
        let c = candidates(&range, &occupied, 1, 1, None, &mut rng);
        assert_eq!(c.len(), 8);
        assert!(!c.contains(&10002) && !c.contains(&10005));
        let c = candidates(&range, &occupied, 3, 1, None, &mut rng);
        assert_eq!(c[0], 10004);
        let full: BTreeSet<u16> = range.clone().collect();
        assert!(candidates(&range, &full, 3, 1, None, &mut rng).is_empty());
        // The file's port first when free; then the preferred one; each port once.
        let c = candidates(&range, &occupied, 3, 1, Some(10009), &mut rng);
        assert_eq!(&c[..2], &[10009, 10004]);
        assert_eq!(c.len(), 8);
        let c = candidates(&range, &occupied, 3, 1, Some(10004), &mut rng);
        assert_eq!(c[0], 10004);
        assert_eq!(c.len(), 8);
        // Taken or outside the range: ignored.
        assert_eq!(
            candidates(&range, &occupied, 3, 1, Some(10005), &mut rng)[0],
            10004
        );
        assert_eq!(
            candidates(&range, &occupied, 3, 1, Some(443), &mut rng)[0],
            10004
        );
        // Same seed, same order: what `plan` shows is what `run` tries.
        let seeded = |s| candidates(&range, &occupied, 3, 1, None, &mut StdRng::seed_from_u64(s));
        assert_eq!(seeded(host_seed("i-1")), seeded(host_seed("i-1")));
    }
}
