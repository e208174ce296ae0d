//! The Kafka service: the [`ServiceManager`] seam, `restart.command`, and whether Kafka's
//! process runs (`restart.kafka_unit` / `restart.kafka_pid_file`, see [`crate::kafka::process`]).

use std::future::Future;
use std::time::Duration;

use super::RestartError;
use crate::kafka::process::{KafkaProcess, ProcessCheck, ProcessState};

/// Restarts the Kafka service and says whether its process runs.
pub trait ServiceManager: Send + Sync {
    /// Runs the restart and returns when it finished.
    fn restart(&self) -> impl Future<Output = Result<(), RestartError>> + Send;

    /// Whether Kafka's process runs; asked only when nothing accepts connections (to tell a
    /// starting broker from a stopped one). The default cannot tell.
    fn state(&self) -> impl Future<Output = ProcessState> + Send {
        async {
            ProcessState::Unknown {
                why: "no service manager to ask".into(),
            }
        }
    }
}

/// Runs `restart.command`; asks `process` whether Kafka runs.
#[derive(Debug, Clone)]
pub struct CommandService {
    /// argv.
    pub command: Vec<String>,
    /// Upper bound on the command's run time.
    pub timeout: Duration,
    /// How to tell whether Kafka's process runs.
    pub process: ProcessCheck,
}

impl ServiceManager for CommandService {
    async fn state(&self) -> ProcessState {
        self.process.state().await
    }

    async fn restart(&self) -> Result<(), RestartError> {
        let fail = |reason: String| RestartError::Command {
            command: self.command.clone(),
            reason,
        };
        let (program, args) = self
            .command
            .split_first()
            .ok_or_else(|| fail("empty".into()))?;
        // The command's output goes to our log, never to stdout (`run --once --json` owns it).
        let child = tokio::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| fail(e.to_string()))?;
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| fail(format!("still running after {:?}", self.timeout)))?
            .map_err(|e| fail(e.to_string()))?;
        for line in String::from_utf8_lossy(&output.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&output.stderr).lines())
        {
            tracing::info!(output = line, "restart command");
        }
        let status = output.status;
        if status.success() {
            Ok(())
        } else {
            Err(fail(status.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(command: &[&str], timeout_ms: u64) -> CommandService {
        CommandService {
            command: command.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_millis(timeout_ms),
            process: ProcessCheck::None,
        }
    }

    fn reason(result: Result<(), RestartError>) -> String {
        match result {
            Err(RestartError::Command { reason, .. }) => reason,
            other => panic!("expected a command error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_command_succeeds_fails_or_times_out() {
        assert!(service(&["sh", "-c", "echo out; echo err >&2"], 10_000)
            .restart()
            .await
            .is_ok());
        assert!(reason(service(&["sh", "-c", "exit 3"], 10_000).restart().await).contains('3'));
        assert_eq!(reason(service(&[], 10_000).restart().await), "empty");
        assert!(reason(
            service(&["/nonexistent/kplink-restart"], 10_000)
                .restart()
                .await
        )
        .contains("No such file"));
        assert!(reason(service(&["sleep", "2"], 100).restart().await).contains("still running"));
    }
}
