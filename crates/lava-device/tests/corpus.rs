//! A few cases of LAVA's template corpus (`../shared/conformance`, next to the workspace)
//! rendered in-process and compared as data with LAVA's output. The full corpus runs with
//! `cargo xtask conformance templates`. Skips (with a message) when the corpus is absent.

use lava_device::{Context, DeviceConfig, Renderer, load_context};
use std::path::{Path, PathBuf};

fn conformance_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance");
    dir.is_dir().then_some(dir)
}

const CASES: &[&str] = &[
    "device--bbb-01",
    "device--qemu01",
    "device--juno-uboot-01",
    "device-ctx--kvm01--e29bd0d8",
    "device-ctx--qemu01--16c116be",
    "type--d03",
    "type--mimxrt1050_evk",
    "type--b-u585i-iot02a",
    "type--mustang-uefi",
];

#[test]
fn corpus_cases_render_to_lava_data() {
    let Some(dir) = conformance_dir() else {
        lava_test_support::ci::skip_or_fail("../shared/conformance (LAVA's corpus) is absent");
        return;
    };
    let renderer = Renderer::new([dir.join("templates")]);
    let mut checked = 0;
    for name in CASES {
        let case = dir.join("template-cases").join(name);
        if !case.is_dir() {
            println!("case {name} is absent; skipped");
            continue;
        }
        let context_file = case.join("context.yaml");
        let context = if context_file.exists() {
            load_context(&context_file).unwrap()
        } else {
            Context::new()
        };
        let ours = renderer
            .render_file(&case.join("dictionary.jinja2"), &context)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = std::fs::read_to_string(case.join("expected.yaml")).unwrap();
        let ours_data = lava_device::parse_yaml(&ours).unwrap();
        let expected_data = lava_device::parse_yaml(&expected).unwrap();
        assert_eq!(ours_data, expected_data, "{name}: data differs");
        assert_eq!(ours, expected, "{name}: bytes differ");
        // Every rendered corpus configuration loads as a device configuration.
        DeviceConfig::from_yaml_str(&ours, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        checked += 1;
    }
    assert!(checked > 0, "no corpus case found");
}
