//! Who this host is for a pass ([`Context`]: identity, broker id, the desired shape on each
//! NLB) and the ports a new claim tries ([`claim_candidates`]).
//!
//! Separate from the step planning in `plan/mod.rs`: the context is resolved once per pass and
//! shared by every NLB's plan, and the candidates are the one place the planner's pure world
//! meets the per-host seed of [`crate::registry`].

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;

use super::{Assessment, Desired, Observed};
use crate::metadata::Identity;
use crate::registry;

/// Who this host is, resolved once per pass.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Context {
    /// Instance identity.
    pub identity: Identity,
    /// Broker id.
    pub broker_id: i32,
    /// Where the broker id came from.
    pub broker_id_source: String,
    /// Desired shape on each configured NLB, in list order: `shards[i].shard == i` (one entry
    /// with `nlb.load_balancer_arn`). The advertised host and group names differ per NLB.
    pub shards: Vec<Desired>,
}

impl Context {
    /// The desired shape on NLB `index` (clamped: the list is never empty).
    pub(crate) fn shard(&self, index: usize) -> &Desired {
        &self.shards[index.min(self.shards.len().saturating_sub(1))]
    }

    /// The NLB whose advertised host `endpoint` (`host:port`, from `server.properties`) names:
    /// where this broker's claim most likely is, so the steady state reads one NLB only.
    pub(crate) fn shard_of_endpoint(&self, endpoint: Option<&str>) -> Option<usize> {
        let host = endpoint?.rsplit_once(':')?.0;
        self.shards
            .iter()
            .position(|d| d.listener.advertised_host == host)
    }
}

/// The ports a new claim tries, in order; the same for `plan` and `run` (seeded by the instance).
pub(crate) fn claim_candidates(ctx: &Context, observed: &Observed) -> Vec<u16> {
    // The file's port is kept only on the NLB the file names (any, with one NLB).
    let keep = (ctx.shards.len() == 1
        || ctx.shard_of_endpoint(observed.file_endpoint.as_deref()) == Some(observed.shard))
    .then(|| observed.file_port())
    .flatten();
    claim_candidates_for(ctx, observed.shard, &observed.assessment, keep)
}

/// [`claim_candidates`] on NLB `shard` as `assessment` describes it, keeping `keep` if free.
pub(crate) fn claim_candidates_for(
    ctx: &Context,
    shard: usize,
    assessment: &Assessment,
    keep: Option<u16>,
) -> Vec<u16> {
    registry::candidates(
        &ctx.shard(shard).port_range,
        &assessment.occupied,
        ctx.broker_id,
        ctx.shards.len(),
        keep,
        &mut StdRng::seed_from_u64(registry::host_seed(&ctx.identity.instance_id)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::desired;
    use crate::plan::{assess, Observed};

    fn context(hosts: &[&str]) -> Context {
        let shards = hosts
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let mut d = desired();
                d.shard = i;
                d.listener.advertised_host = host.to_string();
                d
            })
            .collect();
        Context {
            identity: Identity {
                instance_id: "i-0abc".into(),
                region: "us-east-1".into(),
                az: "us-east-1a".into(),
                az_id: "use1-az6".into(),
                private_ip: "10.0.0.5".into(),
                vpc_id: "vpc-1".into(),
            },
            broker_id: 3,
            broker_id_source: "test".into(),
            shards,
        }
    }

    fn observed(ctx: &Context, shard: usize, file_endpoint: Option<&str>) -> Observed {
        Observed {
            shard,
            full: Vec::new(),
            assessment: assess(ctx.shard(shard), &[], None),
            dedicated_targets: vec![],
            bootstrap_targets: vec![],
            file_endpoint: file_endpoint.map(String::from),
            file_rack: None,
            properties_text: String::new(),
            lifecycle: crate::lifecycle::Lifecycle::Staying,
            certificate: None,
        }
    }

    /// The NLB a file's endpoint names, by its advertised host; none for another host or no
    /// endpoint.
    #[test]
    fn the_endpoint_names_its_nlb() {
        let ctx = context(&[
            "kafka-use1-az6-s0.x.internal",
            "kafka-use1-az6-s1.x.internal",
        ]);
        assert_eq!(
            ctx.shard_of_endpoint(Some("kafka-use1-az6-s1.x.internal:10007")),
            Some(1)
        );
        assert_eq!(
            ctx.shard_of_endpoint(Some("kafka-use1-az6-s0.x.internal:10002")),
            Some(0)
        );
        assert_eq!(ctx.shard_of_endpoint(Some("other.x.internal:10002")), None);
        assert_eq!(ctx.shard_of_endpoint(None), None);
    }

    /// A new claim tries the port the file already advertises first (clients keep their
    /// address), with several NLBs only on the NLB the file names.
    #[test]
    fn a_claim_tries_the_files_port_first_on_the_nlb_it_names() {
        // The port tried last without a file: keeping it first is the file's doing.
        let last = |ctx: &Context, shard: usize| {
            *claim_candidates(ctx, &observed(ctx, shard, None))
                .last()
                .unwrap()
        };
        let one = context(&["kafka-use1-az6.x.internal"]);
        let port = last(&one, 0);
        let o = observed(&one, 0, Some(&format!("kafka-use1-az6.x.internal:{port}")));
        assert_eq!(claim_candidates(&one, &o)[0], port);
        // One NLB: the file's port is kept even when its host is another (a renamed template).
        let o = observed(&one, 0, Some(&format!("old-name.x.internal:{port}")));
        assert_eq!(claim_candidates(&one, &o)[0], port);

        let two = context(&[
            "kafka-use1-az6-s0.x.internal",
            "kafka-use1-az6-s1.x.internal",
        ]);
        let port = last(&two, 1);
        let named = observed(
            &two,
            1,
            Some(&format!("kafka-use1-az6-s1.x.internal:{port}")),
        );
        assert_eq!(claim_candidates(&two, &named)[0], port);
        // The file names NLB 0: on NLB 1 the port is one like any other.
        let elsewhere = observed(
            &two,
            1,
            Some(&format!("kafka-use1-az6-s0.x.internal:{port}")),
        );
        let unnamed = observed(&two, 1, None);
        assert_eq!(
            claim_candidates(&two, &elsewhere),
            claim_candidates(&two, &unnamed)
        );
    }
}
