//! Bad input gives an error that names the file and line; nothing panics.

use lava_device::{Context, DeviceConfig, DeviceError, Renderer, load_device};
use std::path::Path;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn render_err(dir: &Path, dictionary: &Path) -> DeviceError {
    Renderer::new([dir])
        .render_file(dictionary, &Context::new())
        .expect_err("rendering should fail")
}

fn assert_names(err: &DeviceError, file: &Path, line: usize, words: &str) {
    let text = err.to_string();
    assert!(
        text.contains(&file.display().to_string()),
        "{text:?} should name {}",
        file.display()
    );
    assert_eq!(err.line(), Some(line), "{text}");
    assert!(text.contains(&format!(":{line}:")), "{text}");
    assert!(text.contains(words), "{text:?} should say {words:?}");
}

#[test]
fn extending_a_missing_device_type() {
    let dir = tempfile::tempdir().unwrap();
    let dict = write(
        dir.path(),
        "dev.jinja2",
        "{# comment #}\n{% extends 'no-such-type.jinja2' %}\n",
    );
    let err = render_err(dir.path(), &dict);
    assert_names(&err, &dict, 2, "no-such-type.jinja2");
    assert!(err.to_string().contains("searched"), "{err}");
}

#[test]
fn including_a_missing_template() {
    let dir = tempfile::tempdir().unwrap();
    let parent = write(
        dir.path(),
        "t.jinja2",
        "a: 1\n\n{% include 'gone.jinja2' %}\n",
    );
    let dict = write(dir.path(), "dev.jinja2", "{% extends 't.jinja2' %}");
    let err = render_err(dir.path(), &dict);
    assert_names(&err, &parent, 3, "gone.jinja2");
}

#[test]
fn syntax_error_in_a_device_type() {
    let dir = tempfile::tempdir().unwrap();
    let parent = write(dir.path(), "broken.jinja2", "a: 1\nb: {{ x | }}\n");
    let dict = write(
        dir.path(),
        "dev.jinja2",
        "{% set x = 1 %}\n{% extends 'broken.jinja2' %}",
    );
    let err = render_err(dir.path(), &dict);
    assert_names(&err, &parent, 2, "syntax error");
}

#[test]
fn syntax_error_in_the_dictionary() {
    let dir = tempfile::tempdir().unwrap();
    let dict = write(
        dir.path(),
        "dev.jinja2",
        "{% set a = 1 %}\n{% set x = [ %}\n",
    );
    let err = render_err(dir.path(), &dict);
    assert_names(&err, &dict, 2, "syntax error");
}

#[test]
fn a_template_that_extends_itself() {
    let dir = tempfile::tempdir().unwrap();
    let looped = write(
        dir.path(),
        "loop.jinja2",
        "x: 1\n{% extends 'loop.jinja2' %}\n",
    );
    let dict = write(dir.path(), "dev.jinja2", "{% extends 'loop.jinja2' %}");
    let err = render_err(dir.path(), &dict);
    assert_names(&err, &looped, 2, "loop.jinja2");
}

#[test]
fn a_template_that_includes_itself() {
    let dir = tempfile::tempdir().unwrap();
    let looped = write(
        dir.path(),
        "inc.jinja2",
        "x: 1\n{% include 'inc.jinja2' %}\n",
    );
    let dict = write(dir.path(), "dev.jinja2", "{% extends 'inc.jinja2' %}");
    let err = render_err(dir.path(), &dict);
    assert_names(&err, &looped, 2, "recursion");
}

#[test]
fn a_missing_dictionary_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.jinja2");
    let err = render_err(dir.path(), &missing);
    assert!(matches!(err, DeviceError::Io { .. }), "{err}");
    assert!(err.to_string().contains("nope.jinja2"), "{err}");
}

#[test]
fn names_outside_the_search_path_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("types");
    std::fs::create_dir(&inner).unwrap();
    write(dir.path(), "secret.jinja2", "secret");
    let dict = write(dir.path(), "dev.jinja2", "{% include '../secret.jinja2' %}");
    let err = Renderer::new([&inner])
        .render_file(&dict, &Context::new())
        .unwrap_err();
    assert!(err.to_string().contains("template not found"), "{err}");
}

#[test]
fn rendered_output_that_is_not_a_device_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let renderer = Renderer::new([dir.path()]);
    let empty = write(dir.path(), "empty.jinja2", "{# nothing #}\n");
    let err = load_device(&empty, &renderer, &Context::new()).unwrap_err();
    assert!(matches!(err, DeviceError::Empty { .. }), "{err}");
    assert!(err.to_string().contains("empty.jinja2"), "{err}");

    let list = write(dir.path(), "list.jinja2", "- a\n- b\n");
    let err = load_device(&list, &renderer, &Context::new()).unwrap_err();
    assert!(matches!(err, DeviceError::NotMapping { .. }), "{err}");

    let bad = write(dir.path(), "bad.yaml", "a: [1\n");
    let err = DeviceConfig::load(&bad).unwrap_err();
    assert_eq!(
        err.to_string().split(':').next(),
        Some(format!("{} could not be parsed", bad.display()).as_str())
    );

    // LAVA loads a device without constants; the first constant read names the gap.
    let no_constants = write(dir.path(), "nc.yaml", "parameters: {}\n");
    let dev = DeviceConfig::load(&no_constants).unwrap();
    let err = dev.get_constant("failure_retry", None).unwrap_err();
    assert!(
        matches!(err, DeviceError::NoConstants { ref path } if path.ends_with("nc.yaml")),
        "{err}"
    );
}

#[test]
fn wrong_command_shape_names_the_key() {
    let text = "constants: {}\nparameters:\ntimeouts: {actions: {}, connections: {}}\n\
                commands:\n  hard_reset: {a: b}\n";
    let err = DeviceConfig::from_yaml_str(text, "dev.yaml").unwrap_err();
    assert!(
        matches!(err, DeviceError::Invalid { ref key, .. } if key == "commands.hard_reset"),
        "{err}"
    );
}
