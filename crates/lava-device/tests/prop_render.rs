//! Mutated device dictionaries never make the renderer (or the loader) panic: every input
//! ends in text or in an error.

use lava_device::{Context, DeviceConfig, Renderer};
use proptest::prelude::*;
use std::path::PathBuf;
use std::sync::OnceLock;

fn renderer() -> &'static Renderer {
    static RENDERER: OnceLock<Renderer> = OnceLock::new();
    RENDERER.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        Renderer::new([root.join("fixtures/device-types")])
    })
}

const SEED: &str = "{% extends 'qemu.jinja2' %}\n{% set memory = 1024 %}\n\
{% set extra_options = ['-enable-kvm', '-cpu host'] %}\n{% set power_off_command = 'off' %}\n\
{% block parameters %}\n  x: {{ memory | default(3) | string }}\n{% endblock %}\n";

/// Pieces that make interesting Jinja2: tag delimiters, filters, literals, names.
const PIECES: &[&str] = &[
    "{%",
    "%}",
    "{{",
    "}}",
    "{#",
    "#}",
    "-%}",
    "{%-",
    "|",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "'",
    "\"",
    "=",
    ",",
    ".",
    "~",
    "+",
    "/",
    "%",
    " extends ",
    " block ",
    " endblock ",
    " set ",
    " for ",
    " in ",
    " endfor ",
    " if ",
    " endif ",
    " filter ",
    " endfilter ",
    " include ",
    "'qemu.jinja2'",
    "'lava-rs-base.jinja2'",
    "'missing.jinja2'",
    "indent(width=3)",
    "join(',')",
    "replace('a', 'b', 1)",
    "default(none, true)",
    "string",
    "shlex_quote",
    "yaml_quote",
    "qemu_guest_fs_interface(arch)",
    ".get('x')",
    ".items()",
    "memory",
    "arch",
    "none",
    "true",
    "1e400",
    "-1",
    "0",
    "9223372036854775807",
    "\n",
    " ",
    "\u{e9}",
    "\u{1F600}",
];

fn mutated() -> impl Strategy<Value = String> {
    let edit = (
        0usize..SEED.len() + 1,
        0usize..8,
        proptest::sample::select(PIECES),
    );
    proptest::collection::vec(edit, 0..6).prop_map(|edits| {
        let mut text = SEED.to_string();
        for (at, remove, piece) in edits {
            let mut at = at.min(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let mut end = (at + remove).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.replace_range(at..end, piece);
        }
        text
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn mutated_dictionaries_do_not_panic(source in mutated()) {
        if let Ok(text) = renderer().render_str("mutated.jinja2", &source, &Context::new()) {
            let _ = DeviceConfig::from_yaml_str(&text, "mutated.jinja2");
        }
    }

    #[test]
    fn arbitrary_text_does_not_panic(source in "\\PC{0,200}") {
        let _ = renderer().render_str("arbitrary.jinja2", &source, &Context::new());
        let _ = DeviceConfig::from_yaml_str(&source, "arbitrary.yaml");
    }
}
