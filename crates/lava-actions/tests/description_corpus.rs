//! `description.yaml` on every pipeline of LAVA's corpus (`../shared/conformance`, next to
//! the workspace): lava-pipeline's direct emitter writes exactly the text serde_yaml writes
//! for the same description, so the file cannot drift from the format conformance checks.
//! Skips (with a message) when the corpus is absent; fails under CI=true.

use lava_pipeline::{DescribedAction, Device, JobParser, ParseOptions, description_yaml};
use std::path::{Path, PathBuf};

fn conformance_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance");
    dir.is_dir().then_some(dir)
}

fn optional(path: PathBuf) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

#[test]
fn every_corpus_description_is_the_text_serde_yaml_writes() {
    let Some(dir) = conformance_dir() else {
        lava_test_support::ci::skip_or_fail("../shared/conformance (LAVA's corpus) is absent");
        return;
    };
    #[derive(serde::Serialize)]
    struct Description {
        pipeline: Vec<DescribedAction>,
    }
    let registry = lava_actions::registry();
    let (mut compared, mut unbuilt) = (0, Vec::new());
    for corpus in ["pipeline-cases", "pipeline-cases-extra"] {
        let Ok(entries) = std::fs::read_dir(dir.join(corpus)) else {
            continue;
        };
        let mut cases: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        cases.sort();
        for case in cases.iter().filter(|c| c.join("job.yaml").is_file()) {
            let job = std::fs::read_to_string(case.join("job.yaml")).unwrap();
            let device = std::fs::read_to_string(case.join("device.yaml")).unwrap();
            let options = ParseOptions {
                job_id: "1".into(),
                source: Some(case.join("job.yaml")),
                dispatcher_config: optional(case.join("dispatcher.yaml")),
                env_dut: optional(case.join("env-dut.yaml")),
            };
            // Some cases need host tools LAVA looks up while building (the xtask
            // conformance run provides stand-ins); those are not built here.
            let built = Device::from_yaml(&device, None).and_then(|device| {
                JobParser::new(&registry, &lava_actions::FIXED).parse(&job, device, &options)
            });
            let Ok((_job, pipeline)) = built else {
                unbuilt.push(case.display().to_string());
                continue;
            };
            let reference = serde_yaml::to_string(&Description {
                pipeline: pipeline.describe(),
            })
            .unwrap();
            assert_eq!(description_yaml(&pipeline), reference, "{}", case.display());
            compared += 1;
        }
    }
    println!("{compared} corpus descriptions compared; not built here: {unbuilt:?}");
    assert!(
        compared >= 85,
        "only {compared} corpus pipelines were built: {unbuilt:?}"
    );
}
