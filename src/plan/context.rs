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
pub struct Context {
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
    pub fn shard(&self, index: usize) -> &Desired {
        &self.shards[index.min(self.shards.len().saturating_sub(1))]
    }

    /// The NLB whose advertised host `endpoint` (`host:port`, from `server.properties`) names:
    /// where this broker's claim most likely is, so the steady state reads one NLB only.
    pub fn shard_of_endpoint(&self, endpoint: Option<&str>) -> Option<usize> {
        let host = endpoint?.rsplit_once(':')?.0;
        self.shards
            .iter()
            .position(|d| d.listener.advertised_host == host)
    }
}

/// The ports a new claim tries, in order; the same for `plan` and `run` (seeded by the instance).
pub fn claim_candidates(ctx: &Context, observed: &Observed) -> Vec<u16> {
    // The file's port is kept only on the NLB the file names (any, with one NLB).
    let keep = (ctx.shards.len() == 1
        || ctx.shard_of_endpoint(observed.file_endpoint.as_deref()) == Some(observed.shard))
    .then(|| observed.file_port())
    .flatten();
    claim_candidates_for(ctx, observed.shard, &observed.assessment, keep)
}

/// [`claim_candidates`] on NLB `shard` as `assessment` describes it, keeping `keep` if free.
pub fn claim_candidates_for(
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
