//! Valid but risky settings: the warnings `check-config`, `plan` and the daemon print.

use std::time::Duration;

use super::{Config, RestartMode, NLB_DEFAULT_HEALTHY_AFTER};

impl Config {
    /// Valid but risky settings, one line each (printed by `check-config`, `plan` and at daemon
    /// start).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let range = self.nlb.port_range;
        let claims = range.len();
        // The bootstrap is a listener too (the restart lock is not: a target group).
        let needed = claims + 1;
        let max = crate::nlb::MAX_LISTENERS_PER_NLB;
        if needed > max {
            out.push(format!(
                "nlb.port_range {range} ({claims} ports) + bootstrap listener = {needed} listeners, more than the {max} AWS allows per Network Load Balancer (not adjustable): at most {} brokers can claim a port; use a range of {} ports or fewer",
                max - 1,
                max - 1
            ));
        }
        if let Some(port) = self.restart.lock_port {
            out.push(format!(
                "restart.lock_port = {port} is deprecated and ignored: the restart lock is the target group {} now, not a listener; remove the key (a lock listener an older agent left on port {port} is still honoured until released)",
                crate::registry::lock_group_name(&self.cluster)
            ));
        }
        // AWS ("Health checks for Network Load Balancer target groups"): a TCP target group's
        // defaults, HealthCheckIntervalSeconds 30 and HealthyThresholdCount 5.
        if self.restart.mode == RestartMode::Rolling
            && self.restart.timeout < NLB_DEFAULT_HEALTHY_AFTER + Duration::from_secs(60)
        {
            out.push(format!(
                "restart.timeout = {} is short: after a restart the agent waits for Kafka and then for the NLB to mark the broker healthy, which takes {} with the target group's default health checks (30 s interval x 5); a broker not back within the timeout keeps the cluster restart lock failed",
                humantime::format_duration(self.restart.timeout),
                humantime::format_duration(NLB_DEFAULT_HEALTHY_AFTER)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_util::{parse, MINIMAL};

    #[test]
    fn warnings_count_the_typed_range() {
        let with =
            |range: &str| MINIMAL.replace("[nlb]", &format!("[nlb]\nport_range = {range:?}"));
        // 49 claims + bootstrap = 50 listeners, the most an NLB allows (the lock is no listener).
        assert!(parse(&with("20001-20049")).unwrap().warnings().is_empty());
        let warnings = parse(&with(" 20001 - 20050")).unwrap().warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0]
                .starts_with("nlb.port_range 20001-20050 (50 ports) + bootstrap listener = 51"),
            "{warnings:?}"
        );
    }

    #[test]
    fn lock_port_is_accepted_with_a_deprecation_warning() {
        // Users' files have it, anywhere an older release allowed it or not: never an error.
        for port in [9999, 10000, 10049, 0] {
            let config = parse(&format!("{MINIMAL}[restart]\nlock_port = {port}\n")).unwrap();
            let warnings = config.warnings();
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            assert!(
                warnings[0].starts_with(&format!(
                    "restart.lock_port = {port} is deprecated and ignored: the restart lock is the target group kp-"
                )),
                "{warnings:?}"
            );
        }
        // Where a 0.1 lock listener may be is `crate::compat`'s (tested there).
        assert!(parse(MINIMAL).unwrap().warnings().is_empty());
        let short = parse(&format!("{MINIMAL}[restart]\ntimeout = \"2m\"\n")).unwrap();
        assert_eq!(short.warnings().len(), 1, "{:?}", short.warnings());
        assert!(short.warnings()[0].starts_with("restart.timeout = 2m is short"));
        assert!(short.warnings()[0].contains("2m 30s"));
        let never = parse(&format!(
            "{MINIMAL}[restart]\ntimeout = \"2m\"\nmode = \"never\"\n"
        ))
        .unwrap();
        assert!(never.warnings().is_empty());
    }
}
