//! Is Kafka's *process* running? The TCP probe alone cannot tell a stopped broker from one that
//! is still starting: Apache Kafka opens its listeners only after it has recovered its logs
//! (`KafkaServer.startup`/`BrokerServer.startup` start the `SocketServer`'s data-plane acceptors
//! last, after `LogManager.startup`), which takes minutes after an unclean shutdown. Reading a
//! starting broker as "not running" would drop the restart and leave it on its old endpoint.
//!
//! So the agent asks the service manager: the systemd unit's `ActiveState` (`systemctl show`),
//! or a pid file. [`ProcessCheck::state`] is the thin adapter; [`unit_state`] (what
//! `systemctl show` printed → [`ProcessState`]) is pure. Where neither is available (no systemd
//! and no pid file configured) the answer is [`ProcessState::Unknown`] and the agent falls back
//! to the TCP probe, as before.

use std::future::Future;
use std::path::{Path, PathBuf};

/// What the service manager says about Kafka's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessState {
    /// Its process runs (or is starting or stopping); `how` says who says so
    /// (`kafka.service is activating`, `pid 4242 from /run/kafka.pid`).
    Running {
        /// One phrase for logs and `status`.
        how: String,
    },
    /// Its process does not run: it reads `server.properties` when it starts.
    Stopped {
        /// One phrase for logs and `status`.
        how: String,
    },
    /// Nothing to ask, or the answer made no sense (the unit does not exist): the TCP probe
    /// alone decides.
    Unknown {
        /// Why.
        why: String,
    },
}

/// Tells whether Kafka's process runs.
pub trait KafkaProcess: Send + Sync {
    /// Asks the service manager.
    fn state(&self) -> impl Future<Output = ProcessState> + Send;
}

/// How to ask (from `restart.kafka_unit` / `restart.kafka_pid_file`, see
/// [`crate::config::RestartConfig::process_check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessCheck {
    /// The systemd unit's state (only when systemd is the init system).
    Unit(String),
    /// A pid file: running while the process it names exists.
    PidFile(PathBuf),
    /// Not configured: [`ProcessState::Unknown`].
    None,
}

/// `sd_booted()`: systemd is the running init system (sd_booted(3): "checks whether the
/// directory /run/systemd/system/ exists").
fn systemd_booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

impl KafkaProcess for ProcessCheck {
    async fn state(&self) -> ProcessState {
        match self {
            ProcessCheck::None => ProcessState::Unknown {
                why: "neither restart.kafka_unit nor restart.kafka_pid_file applies".into(),
            },
            ProcessCheck::Unit(unit) if !systemd_booted() => ProcessState::Unknown {
                why: format!("systemd is not running here, so {unit} cannot be asked"),
            },
            ProcessCheck::Unit(unit) => {
                let out = tokio::process::Command::new("systemctl")
                    .args(["show", "--property=LoadState,ActiveState", "--", unit])
                    .stdin(std::process::Stdio::null())
                    .output()
                    .await;
                match out {
                    Ok(out) if out.status.success() => {
                        unit_state(unit, &String::from_utf8_lossy(&out.stdout))
                    }
                    Ok(out) => ProcessState::Unknown {
                        why: format!(
                            "systemctl show {unit}: {} {}",
                            out.status,
                            String::from_utf8_lossy(&out.stderr).trim()
                        ),
                    },
                    Err(e) => ProcessState::Unknown {
                        why: format!("systemctl show {unit}: {e}"),
                    },
                }
            }
            ProcessCheck::PidFile(path) => pid_file_state(path),
        }
    }
}

/// `systemctl show --property=LoadState,ActiveState` output → the state (pure). ActiveState
/// values from systemd's `unit_active_state` table (`src/basic/unit-def.c`): `active`,
/// `reloading`, `activating`, `deactivating`, `refreshing` and `maintenance` have a process (or
/// are about to); `inactive` and `failed` have none. A unit systemd does not know
/// (`LoadState=not-found`) is [`ProcessState::Unknown`]: `restart.kafka_unit` names another unit.
pub fn unit_state(unit: &str, show: &str) -> ProcessState {
    let value = |key: &str| {
        show.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
    };
    match (value("LoadState"), value("ActiveState")) {
        (Some("not-found"), _) => ProcessState::Unknown {
            why: format!("systemd has no unit {unit} (set restart.kafka_unit)"),
        },
        (_, Some(state @ ("inactive" | "failed"))) => ProcessState::Stopped {
            how: format!("{unit} is {state}"),
        },
        (
            _,
            Some(
                state @ ("active" | "reloading" | "activating" | "deactivating" | "refreshing"
                | "maintenance"),
            ),
        ) => ProcessState::Running {
            how: format!("{unit} is {state}"),
        },
        (_, other) => ProcessState::Unknown {
            why: format!("{unit} has ActiveState {}", other.unwrap_or("(none)")),
        },
    }
}

/// Running while the pid in `path` names a live process. A missing file is a stopped Kafka
/// (init scripts remove it on stop); an unreadable or malformed one is unknown.
fn pid_file_state(path: &Path) -> ProcessState {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return ProcessState::Stopped {
                how: format!("no pid file {}", path.display()),
            }
        }
        Err(e) => {
            return ProcessState::Unknown {
                why: format!("cannot read {}: {e}", path.display()),
            }
        }
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return ProcessState::Unknown {
            why: format!("{} does not hold a pid", path.display()),
        };
    };
    // procfs(5): /proc/<pid> exists while the process does (a zombie too, until reaped).
    if Path::new(&format!("/proc/{pid}")).exists() {
        ProcessState::Running {
            how: format!("pid {pid} from {} runs", path.display()),
        }
    } else {
        ProcessState::Stopped {
            how: format!("pid {pid} from {} is gone", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_states_map_to_process_states() {
        let show = |load: &str, active: &str| format!("LoadState={load}\nActiveState={active}\n");
        for active in ["active", "activating", "deactivating", "reloading"] {
            assert_eq!(
                unit_state("kafka.service", &show("loaded", active)),
                ProcessState::Running {
                    how: format!("kafka.service is {active}")
                }
            );
        }
        for active in ["inactive", "failed"] {
            assert_eq!(
                unit_state("kafka.service", &show("loaded", active)),
                ProcessState::Stopped {
                    how: format!("kafka.service is {active}")
                }
            );
        }
        assert!(matches!(
            unit_state("kafka.service", &show("not-found", "inactive")),
            ProcessState::Unknown { why } if why.contains("restart.kafka_unit")
        ));
        assert!(matches!(
            unit_state("kafka.service", ""),
            ProcessState::Unknown { .. }
        ));
        // The order systemctl prints does not matter.
        assert!(matches!(
            unit_state("k", "ActiveState=activating\nLoadState=loaded\n"),
            ProcessState::Running { .. }
        ));
    }

    #[tokio::test]
    async fn a_pid_file_says_running_while_its_process_lives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kafka.pid");
        let check = ProcessCheck::PidFile(path.clone());
        assert!(
            matches!(check.state().await, ProcessState::Stopped { how } if how.contains("no pid file"))
        );
        std::fs::write(&path, format!("{}\n", std::process::id())).unwrap();
        assert!(matches!(check.state().await, ProcessState::Running { .. }));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        std::fs::write(&path, format!("{gone}\n")).unwrap();
        assert!(
            matches!(check.state().await, ProcessState::Stopped { how } if how.contains("gone"))
        );
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(check.state().await, ProcessState::Unknown { .. }));
        assert!(matches!(
            ProcessCheck::None.state().await,
            ProcessState::Unknown { .. }
        ));
    }
}
