//! Whether this instance is leaving: Auto Scaling scale-in and Spot interruptions.
//!
//! Two instance metadata items (IMDSv2, below `/latest/meta-data/`) say so ahead of time:
//!
//! - `autoscaling/target-lifecycle-state`: the steady state the Auto Scaling group is moving the
//!   instance to (AWS, "Retrieve the target lifecycle state through instance metadata"):
//!   `InService`, `Terminated`, `Detached`, `Standby`, and with a warm pool `Warmed:Stopped`,
//!   `Warmed:Running`, `Warmed:Hibernated`, `Warmed:Terminated`. 404 outside an Auto Scaling group.
//! - `spot/instance-action`: present only once EC2 has scheduled a Spot interruption, as JSON
//!   `{"action": "terminate" | "stop" | "hibernate", "time": "2024-05-01T12:00:00Z"}`; 404 otherwise.
//!
//! [`decide`] maps the two answers to a [`Lifecycle`]; it is pure and table-tested. The rules:
//!
//! - a target state that ends with this instance terminated or stopped is *leaving*: `Terminated`,
//!   `Warmed:Terminated`, and `Warmed:Stopped` / `Warmed:Hibernated` (scale-in into a warm pool
//!   with instance reuse, or a launch into the pool: the instance is about to be stopped);
//! - every other target state is *staying*, also unknown ones and `Warmed:Running` (the instance
//!   keeps running and may go `InService` without a reboot, and this agent would not notice that
//!   it came back), `Detached` and `Standby` (still running);
//! - any `spot/instance-action` document is *leaving*, whatever its action, and also when it cannot
//!   be parsed: EC2 only serves that item once it has scheduled an interruption, so its presence is
//!   the signal and its body only the detail (an unreadable body is reported as such);
//! - 404 for both: *staying*.
//!
//! A leaving instance never comes back within the same agent process (it is terminated, or
//! stopped, which ends the process), so the daemon keeps the first "leaving" it saw
//! ([`Lifecycle::after`]): a metadata answer that later reads "staying" does not put the
//! instance back into the bootstrap group.

use serde::Serialize;

use crate::metadata::{InstanceMetadata, MetadataError};

/// Metadata path of the Auto Scaling target lifecycle state.
pub(crate) const TARGET_STATE_PATH: &str = "autoscaling/target-lifecycle-state";
/// Metadata path of a scheduled Spot interruption.
pub(crate) const SPOT_ACTION_PATH: &str = "spot/instance-action";

/// Target lifecycle states after which this instance no longer runs.
const LEAVING_TARGET_STATES: [&str; 4] = [
    "Terminated",
    "Warmed:Terminated",
    "Warmed:Stopped",
    "Warmed:Hibernated",
];

/// Whether this instance stays or is leaving.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum Lifecycle {
    /// In service (or not in an Auto Scaling group, or not a Spot instance).
    #[default]
    Staying,
    /// About to be terminated or stopped.
    Leaving {
        /// Why.
        reason: LeaveReason,
    },
}

/// What says the instance is leaving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub(crate) enum LeaveReason {
    /// Auto Scaling moves the instance to `target_state` (scale-in, an instance refresh, a failed
    /// health check, a warm pool).
    AutoScaling {
        /// The target lifecycle state, e.g. `Terminated`.
        target_state: String,
    },
    /// EC2 scheduled a Spot interruption.
    Spot {
        /// `terminate`, `stop` or `hibernate`.
        action: String,
        /// When, as EC2 says it (UTC, RFC 3339).
        time: Option<String>,
    },
    /// A Spot interruption notice whose body could not be read as JSON.
    SpotUnreadable {
        /// The body, shortened.
        notice: String,
    },
}

impl std::fmt::Display for LeaveReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeaveReason::AutoScaling { target_state } => {
                write!(f, "Auto Scaling target lifecycle state {target_state}")
            }
            LeaveReason::Spot { action, time } => {
                write!(f, "Spot interruption: {action}")?;
                match time {
                    Some(t) => write!(f, " at {t}"),
                    None => Ok(()),
                }
            }
            LeaveReason::SpotUnreadable { notice } => {
                write!(f, "Spot interruption notice (unreadable: {notice:?})")
            }
        }
    }
}

impl Lifecycle {
    /// Why the instance is leaving, if it is.
    pub(crate) fn leaving(&self) -> Option<&LeaveReason> {
        match self {
            Lifecycle::Staying => None,
            Lifecycle::Leaving { reason } => Some(reason),
        }
    }

    /// Whether the instance is leaving.
    pub(crate) fn is_leaving(&self) -> bool {
        self.leaving().is_some()
    }

    /// This observation, given what an earlier pass of this process saw: once leaving, always
    /// leaving (the earlier reason is kept when this one says staying).
    pub(crate) fn after(self, earlier: &Lifecycle) -> Lifecycle {
        match (&self, earlier) {
            (Lifecycle::Staying, Lifecycle::Leaving { .. }) => earlier.clone(),
            _ => self,
        }
    }
}

impl std::fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lifecycle::Staying => f.write_str("staying"),
            Lifecycle::Leaving { reason } => write!(f, "leaving ({reason})"),
        }
    }
}

/// The spot notice's body as EC2 serves it.
#[derive(serde::Deserialize)]
struct SpotNotice {
    action: String,
    time: Option<String>,
}

/// Decides from the two metadata answers (`None`: 404). A Spot notice wins over the target
/// state: it is the shorter deadline (two minutes).
pub(crate) fn decide(target_state: Option<&str>, spot_action: Option<&str>) -> Lifecycle {
    if let Some(body) = spot_action {
        let reason = match serde_json::from_str::<SpotNotice>(body.trim()) {
            Ok(n) if !n.action.trim().is_empty() => LeaveReason::Spot {
                action: n.action.trim().to_string(),
                time: n.time.filter(|t| !t.trim().is_empty()),
            },
            _ => LeaveReason::SpotUnreadable {
                notice: shorten(body.trim(), 64),
            },
        };
        return Lifecycle::Leaving { reason };
    }
    match target_state.map(str::trim) {
        Some(state) if LEAVING_TARGET_STATES.contains(&state) => Lifecycle::Leaving {
            reason: LeaveReason::AutoScaling {
                target_state: state.to_string(),
            },
        },
        _ => Lifecycle::Staying,
    }
}

fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Reads both items (one GET each; 404 is "not set") and decides. A failed read is an error: a
/// pass that cannot tell must not put the instance back into the bootstrap group.
pub(crate) async fn read<M: InstanceMetadata>(md: &M) -> Result<Lifecycle, MetadataError> {
    let target_state = md.get(TARGET_STATE_PATH).await?;
    let spot_action = md.get(SPOT_ACTION_PATH).await?;
    Ok(decide(target_state.as_deref(), spot_action.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(l: &Lifecycle) -> String {
        l.leaving().map(ToString::to_string).unwrap_or_default()
    }

    #[test]
    #[rustfmt::skip]
    fn decide_table() {
        let notice = r#"{"action": "terminate", "time": "2024-05-01T12:00:00Z"}"#;
        // (target state, spot notice, leaving, reason)
        let rows: &[(Option<&str>, Option<&str>, bool, &str)] = &[
            (None, None, false, ""),
            (Some("InService"), None, false, ""),
            (Some("Pending"), None, false, ""),
            (Some("Detached"), None, false, ""),
            (Some("Standby"), None, false, ""),
            (Some("Warmed:Running"), None, false, ""),
            (Some("SomethingNew"), None, false, ""),
            (Some(""), None, false, ""),
            (Some("terminated"), None, false, ""),
            (Some("Terminated"), None, true, "Auto Scaling target lifecycle state Terminated"),
            (Some("Terminated\n"), None, true, "Auto Scaling target lifecycle state Terminated"),
            (Some("Warmed:Terminated"), None, true, "Auto Scaling target lifecycle state Warmed:Terminated"),
            (Some("Warmed:Stopped"), None, true, "Auto Scaling target lifecycle state Warmed:Stopped"),
            (Some("Warmed:Hibernated"), None, true, "Auto Scaling target lifecycle state Warmed:Hibernated"),
            (None, Some(notice), true, "Spot interruption: terminate at 2024-05-01T12:00:00Z"),
            (Some("InService"), Some(notice), true, "Spot interruption: terminate at 2024-05-01T12:00:00Z"),
            (Some("Terminated"), Some(r#"{"action":"stop","time":"2024-05-01T12:00:00Z"}"#), true, "Spot interruption: stop at 2024-05-01T12:00:00Z"),
            (None, Some(r#"{"action":"hibernate"}"#), true, "Spot interruption: hibernate"),
            (None, Some(r#"{"action":"reboot","time":""}"#), true, "Spot interruption: reboot"),
            // Present but unreadable: still leaving (the item exists only for an interruption).
            (None, Some("{not json"), true, "Spot interruption notice (unreadable: \"{not json\")"),
            (None, Some(r#"{"time":"2024-05-01T12:00:00Z"}"#), true, "Spot interruption notice (unreadable: \"{\\\"time\\\":\\\"2024-05-01T12:00:00Z\\\"}\")"),
            (None, Some(r#"{"action":""}"#), true, "Spot interruption notice (unreadable: \"{\\\"action\\\":\\\"\\\"}\")"),
            (None, Some(""), true, "Spot interruption notice (unreadable: \"\")"),
        ];
        for (target, spot, leaving, why) in rows {
            let l = decide(*target, *spot);
            assert_eq!(l.is_leaving(), *leaving, "{target:?} {spot:?}: {l}");
            assert_eq!(reason(&l), *why, "{target:?} {spot:?}");
        }
        let long = "x".repeat(200);
        let l = decide(None, Some(&long));
        assert!(reason(&l).ends_with("…\")"), "{l}");
    }

    #[test]
    fn once_leaving_always_leaving() {
        let terminated = decide(Some("Terminated"), None);
        let spot = decide(None, Some(r#"{"action":"stop"}"#));
        assert_eq!(
            Lifecycle::Staying.after(&Lifecycle::Staying),
            Lifecycle::Staying
        );
        assert_eq!(terminated.clone().after(&Lifecycle::Staying), terminated);
        assert_eq!(Lifecycle::Staying.after(&terminated), terminated);
        // A newer reason replaces the older one.
        assert_eq!(spot.clone().after(&terminated), spot);
    }

    #[test]
    fn serializes_for_json_output() {
        let l = decide(None, Some(r#"{"action":"terminate","time":"t"}"#));
        assert_eq!(
            serde_json::to_value(&l).unwrap(),
            serde_json::json!({"state": "leaving", "reason": {"source": "spot", "action": "terminate", "time": "t"}})
        );
        assert_eq!(
            serde_json::to_value(Lifecycle::Staying).unwrap(),
            serde_json::json!({"state": "staying"})
        );
    }

    #[tokio::test]
    async fn reads_both_items_from_metadata() {
        let md = crate::fakes::FakeImds::host("i-0abc", "us-east-1a", "use1-az6", Some(1));
        assert_eq!(read(&md).await.unwrap(), Lifecycle::Staying);
        md.values
            .lock()
            .unwrap()
            .insert(TARGET_STATE_PATH.into(), "Terminated".into());
        assert!(read(&md).await.unwrap().is_leaving());
    }
}
