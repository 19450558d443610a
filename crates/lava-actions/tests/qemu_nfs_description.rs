//! `to: nfs` + `method: qemu-nfs` on a QEMU device: the pipeline LAVA describes for its own
//! qemu-nfs case (`fixtures/qemu/qemu-nfs-lava/`: LAVA's sample job and its reference
//! description), on the kvm02 device rendered with that job's context (the template case
//! of `../shared/conformance`). LAVA's pipeline corpus has no qemu-nfs case; this is one.
//! Skips (with a message) when the corpus is absent; fails under CI=true.

use lava_pipeline::{DescribedAction, Device, JobParser, ParseOptions};
use lava_test_support::paths::workspace;
use std::path::Path;

#[test]
fn qemu_nfs_description_is_lavas() {
    let device = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../../../shared/conformance/template-cases/device-ctx--kvm02--dc2cfcca/expected.yaml",
    );
    let Ok(device) = std::fs::read_to_string(&device) else {
        lava_test_support::ci::skip_or_fail(format!(
            "{} (LAVA's rendered kvm02 device) is absent",
            device.display()
        ));
        return;
    };
    let case = workspace().join("fixtures/qemu/qemu-nfs-lava");
    let job = std::fs::read_to_string(case.join("job.yaml")).unwrap();
    let expected: Vec<DescribedAction> = serde_yaml::from_str(
        &std::fs::read_to_string(case.join("expected-pipeline.yaml")).unwrap(),
    )
    .unwrap();
    let registry = lava_actions::registry();
    let options = ParseOptions {
        job_id: "1".into(),
        source: Some(case.join("job.yaml")),
        dispatcher_config: None,
        env_dut: None,
    };
    let (_job, pipeline) = JobParser::new(&registry, &lava_actions::FIXED)
        .parse(&job, Device::from_yaml(&device, None).unwrap(), &options)
        .unwrap();
    let ours = pipeline.describe();
    assert_eq!(
        serde_yaml::to_string(&ours).unwrap(),
        serde_yaml::to_string(&expected).unwrap()
    );
}
