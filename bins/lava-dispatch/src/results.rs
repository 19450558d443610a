//! The result records of a finished job, read back from its `logs.yaml` as typed
//! [`TestCase`]s (what [`crate::report`] renders) by the run API's parser
//! ([`lava_dispatcher::parse_results`]: every `results` record in log order, with its
//! duration and, on the `lava`/`job` record, the job's error).

use crate::report::TestCase;
use anyhow::Result;
use std::path::Path;

pub use lava_dispatcher::parse_results;

/// Every result record of the job whose log is `log`, in order.
pub fn read_results(log: &Path) -> Result<Vec<TestCase>> {
    Ok(lava_dispatcher::read_results(log)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_log_file_and_names_it_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs.yaml");
        std::fs::write(
            &log,
            concat!(
                "- {\"dt\": \"2026-03-01T00:00:00.000000+00:00\", \"lvl\": \"info\", \"msg\": \"start: 1 deploy\"}\n",
                "- {\"dt\": \"2026-03-01T00:00:01.000000+00:00\", \"lvl\": \"results\", \"msg\": {\"definition\": \"lava\", \"case\": \"job\", \"result\": \"pass\"}}\n",
            ),
        )
        .unwrap();
        let cases = read_results(&log).unwrap();
        assert_eq!(cases.len(), 1);
        assert!(cases[0].is_job_record());
        let missing = dir.path().join("none.yaml");
        let error = format!("{:#}", read_results(&missing).unwrap_err());
        assert!(error.contains("none.yaml"), "{error}");
    }
}
