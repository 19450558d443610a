//! The test-shell overlay at run time.
//!
//! [`build_overlay`] (`lava-overlay`) turns the namespace's test blocks into a
//! [`OverlayRequest`] (one stage per test block with `definitions`, uuids
//! `<job_id>_<level of the repo action>`), builds the tree with lava-shell off the async
//! threads and stores LAVA's context keys (`test/results/lava_test_results_dir`,
//! `test/shared/location`, `test/<uuid>/…`, `uuid/runner_path/<test_name>`…) plus the
//! whole [`Overlay`] for the test shell. [`compress_overlay`] (`compress-overlay`) packs
//! it and stores `compress-overlay/output/file`. [`unpack_overlay_locally`] extracts the
//! tarball for a device whose file system is the worker's (a local shell), refusing any
//! member that would land outside the destination.

use std::path::{Path, PathBuf};

use lava_pipeline::value::scalar_string;
use lava_pipeline::{LavaError, LavaResult, Pipeline, RunContext};
use lava_shell::{
    BakedValues, DefinitionSource, EnvironmentInputs, Overlay, OverlayBuilder, OverlayRequest,
    PlannedDefinition, ShellConstants, TestBlock,
};
use serde_yaml::{Mapping, Value};

/// Where the serialised [`Overlay`] is kept in the namespace data.
const OVERLAY_ACTION: &str = "lava-rs-overlay";
const OVERLAY_LABEL: &str = "overlay";
const OVERLAY_KEY: &str = "overlay";

/// The names of LAVA's repository handlers.
pub const REPO_ACTIONS: [&str; 3] = ["git-repo-action", "inline-repo-action", "url-repo-action"];

/// The levels of the repository handlers under `children` (the `lava-overlay` or
/// `test-definition` pipeline), depth first, i.e. in definition order.
pub fn repo_action_levels(children: &Pipeline) -> Vec<String> {
    children
        .walk()
        .into_iter()
        .filter(|node| REPO_ACTIONS.contains(&node.meta.name.as_str()))
        .map(|node| node.meta.level.clone())
        .collect()
}

/// The scratch directory of the job on the worker (LAVA's job tmp dir, see
/// [`lava_pipeline::scratch`]).
pub fn job_tmp_dir(ctx: &RunContext) -> PathBuf {
    ctx.job.scratch_dir.clone()
}

fn constant(ctx: &RunContext, key: &str) -> LavaResult<Option<String>> {
    let value = ctx
        .job
        .get_constant(key, Some("posix"), &ctx.meta().parameters)?;
    Ok(scalar_string(&value))
}

/// The overlay request of the running action's namespace.
pub fn overlay_request(ctx: &RunContext, repo_levels: &[String]) -> LavaResult<OverlayRequest> {
    let namespace = ctx.namespace();
    let job = &ctx.job;
    let mut constants = ShellConstants::default();
    if let Some(dir) = constant(ctx, "lava_test_results_dir")? {
        constants.lava_test_results_dir = dir;
    }
    if let Some(sh) = constant(ctx, "lava_test_sh_cmd")? {
        constants.lava_test_sh_cmd = sh;
    }
    constants.distro = ctx
        .meta()
        .param("deployment_data")
        .and_then(|d| d.get("distro"))
        .and_then(scalar_string);

    let mut levels = repo_levels.iter();
    let mut test_blocks = Vec::new();
    for test in job.tests_in(&namespace) {
        let Some(definitions) = test.parameters.get("definitions") else {
            continue;
        };
        let mut block = TestBlock {
            definitions: Vec::new(),
            needs_character_delay: test.needs_character_delay,
        };
        for entry in definitions.as_sequence().into_iter().flatten() {
            let source = DefinitionSource::from_value(entry)?;
            let level = levels.next().cloned().ok_or_else(|| {
                LavaError::bug(format!(
                    "no repository action level for test definition '{}'",
                    source.name
                ))
            })?;
            block.definitions.push(PlannedDefinition {
                source,
                repo_action_level: level,
            });
        }
        test_blocks.push(block);
    }

    let device = &job.device;
    let dispatcher = job.parameters.get("dispatcher");
    let dispatcher_str = |key: &str| {
        dispatcher
            .and_then(|d| d.get(key))
            .and_then(scalar_string)
            .unwrap_or_default()
    };
    let job_environment = job
        .parameters
        .get("protocols")
        .and_then(|p| p.get("lava-multinode"))
        .and_then(|m| m.get("environment"))
        .or_else(|| job.parameters.get("environment"))
        .cloned();
    let http_cache = Some(dispatcher_str("http_url_format_string")).filter(|s| !s.is_empty());
    let environment = EnvironmentInputs {
        device_environment: device.lookup(&["environment"]).cloned(),
        device_info: device.lookup(&["device_info"]).cloned(),
        static_info: device.lookup(&["static_info"]).cloned(),
        storage_info: device.lookup(&["storage_info"]).cloned(),
        job_environment,
        job_id: job.id.clone(),
        dispatcher_ip: dispatcher_str("dispatcher_ip"),
        job_tags: job
            .parameters
            .get("tags")
            .and_then(Value::as_sequence)
            .map(|tags| tags.iter().filter_map(scalar_string).collect())
            .unwrap_or_default(),
        dispatcher_prefix: dispatcher_str("prefix"),
        device_hostname: device.hostname.clone(),
        device_type: device.lookup_str(&["devicetype"]).map(str::to_string),
        http_cache,
    };
    let mut baked = BakedValues::default();
    if let Some(Value::Sequence(methods)) = device.lookup(&["storage_info"]) {
        for method in methods.iter().filter_map(Value::as_mapping) {
            for (k, v) in method {
                if let (Some(k), Some(v)) = (scalar_string(k), scalar_string(v)) {
                    baked.storage.push((k, v));
                }
            }
        }
    }
    let secrets = job
        .parameters
        .get("secrets")
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    Some((scalar_string(k)?, scalar_string(v).unwrap_or_default()))
                })
                .collect()
        });
    Ok(OverlayRequest {
        job_id: job.id.clone(),
        namespace,
        constants,
        test_blocks,
        environment,
        secrets,
        env_dut: None,
        baked,
        multinode: crate::runtime::multinode::overlay_values(job)?,
        character_delay_ms: crate::runtime::console::character_delay_ms(ctx, "test"),
    })
}

/// `lava-overlay`: build the overlay of the running action's namespace under a fresh
/// directory of the job's scratch space and store LAVA's context keys.
/// `repo_levels`: [`repo_action_levels`] of the action's children.
pub async fn build_overlay(ctx: &mut RunContext, repo_levels: &[String]) -> LavaResult<Overlay> {
    let request = overlay_request(ctx, repo_levels)?;
    OverlayBuilder::validate(&request)?;
    let location = job_tmp_dir(ctx).join(format!("lava-overlay-{}", ctx.meta().level));
    let cleanup = location.clone();
    tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_dir_all(&cleanup);
        std::fs::create_dir_all(&cleanup)
    })
    .await
    .map_err(|e| LavaError::bug(e.to_string()))?
    .map_err(|e| {
        LavaError::infrastructure(format!("Unable to create {}: {e}", location.display()))
    })?;
    ctx.set_data("test", "shared", "location", location.display().to_string());
    ctx.logger.debug(format!(
        "[{}] Preparing overlay tarball in {}",
        request.namespace,
        location.display()
    ));
    let overlay = OverlayBuilder::default()
        .build_async(request, location)
        .await?;
    store_overlay(ctx, &overlay)?;
    Ok(overlay)
}

/// Stores the overlay and LAVA's per-definition keys in the namespace data.
pub fn store_overlay(ctx: &mut RunContext, overlay: &Overlay) -> LavaResult<()> {
    ctx.set_data(
        "test",
        "results",
        "lava_test_results_dir",
        overlay.results_dir.clone(),
    );
    ctx.set_data(
        "test",
        "shared",
        "lava_test_sh_cmd",
        overlay.lava_test_sh_cmd.clone(),
    );
    ctx.set_data(
        "test",
        "test-definition",
        "overlay_dir",
        overlay.tree.display().to_string(),
    );
    let mut index = Vec::new();
    let mut uuids = Vec::new();
    for d in &overlay.definitions {
        index.push(Value::String(d.name.clone()));
        uuids.push(Value::String(d.uuid.clone()));
        ctx.set_data("uuid", "runner_path", &d.test_name, d.runner_path.clone());
        ctx.set_data(
            "uuid",
            "overlay_path",
            &d.test_name,
            d.overlay_path.display().to_string(),
        );
        ctx.set_data("test", &d.uuid, "repository", d.repository.clone());
        ctx.set_data("test", &d.uuid, "path", d.path.clone());
        if let Some(revision) = &d.revision {
            ctx.set_data("test", &d.uuid, "revision", revision.clone());
        }
        if let Some(commit) = &d.commit_id {
            ctx.set_data("test", &d.uuid, "commit-id", commit.clone());
        }
        let metadata =
            serde_yaml::to_value(&d.metadata).map_err(|e| LavaError::bug(e.to_string()))?;
        ctx.set_data("test", &d.uuid, "testdef_metadata", metadata);
        if !d.expected.is_empty() {
            ctx.set_data(
                "test",
                &d.uuid,
                "testdef_expected",
                Value::Sequence(d.expected.iter().cloned().map(Value::String).collect()),
            );
        }
        if let Some(pattern) = &d.pattern {
            let mut m = Mapping::new();
            m.insert("testdef_pattern".into(), pattern.pattern.clone().into());
            ctx.set_data("test", &d.uuid, "testdef_pattern", Value::Mapping(m));
        }
    }
    ctx.set_data(
        "test-definition",
        "test-definition",
        "testdef_index",
        Value::Sequence(index),
    );
    ctx.set_data(
        "repo-action",
        "repo-action",
        "uuid-list",
        Value::Sequence(uuids),
    );
    let value = serde_yaml::to_value(overlay).map_err(|e| LavaError::bug(e.to_string()))?;
    ctx.set_data(OVERLAY_ACTION, OVERLAY_LABEL, OVERLAY_KEY, value);
    Ok(())
}

/// The overlay built in the running action's namespace (JobError when no deploy built
/// one, as LAVA's "Nothing to run").
pub fn stored_overlay(ctx: &RunContext) -> LavaResult<Overlay> {
    let value = ctx
        .get_data(OVERLAY_ACTION, OVERLAY_LABEL, OVERLAY_KEY)
        .ok_or_else(|| {
            LavaError::job(
                "Nothing to run. Maybe the 'deploy' stage is missing, otherwise this is a bug which should be reported.",
            )
        })?;
    serde_yaml::from_value(value.clone()).map_err(|e| LavaError::bug(e.to_string()))
}

/// `compress-overlay`: pack the overlay into `<job tmp>/compress-overlay-<level>/
/// overlay-<level>.tar.gz` and store `compress-overlay/output/file`.
pub async fn compress_overlay(ctx: &mut RunContext) -> LavaResult<PathBuf> {
    let overlay = stored_overlay(ctx)?;
    let level = ctx.meta().level.clone();
    let dir = job_tmp_dir(ctx).join(format!("compress-overlay-{level}"));
    let output = dir.join(format!("overlay-{level}.tar.gz"));
    std::fs::create_dir_all(&dir).map_err(|e| {
        LavaError::infrastructure(format!("Unable to create {}: {e}", dir.display()))
    })?;
    ctx.logger.debug(format!(
        "Creating {} from {}",
        output.display(),
        overlay.tree.display()
    ));
    let tarball = lava_shell::tarball::build_tarball_async(
        overlay.location.clone(),
        overlay.results_dir.clone(),
        output,
    )
    .await?;
    ctx.logger.debug(format!(
        "Overlay: {} (sha256 {})",
        tarball.path.display(),
        tarball.sha256
    ));
    let file = tarball.path.display().to_string();
    ctx.set_data("compress-overlay", "output", "file", file);
    Ok(tarball.path)
}

/// Extracts the compressed overlay under `dest` (a local device: `/`, or a scratch
/// root in tests). Members landing outside `dest` make the whole unpack fail.
pub async fn unpack_overlay_locally(ctx: &mut RunContext, dest: &Path) -> LavaResult<()> {
    let file = ctx
        .get_data("compress-overlay", "output", "file")
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .ok_or_else(|| LavaError::bug("no compressed overlay to unpack"))?;
    ctx.logger.debug(format!(
        "Unpacking {} into {}",
        file.display(),
        dest.display()
    ));
    let dest = dest.to_path_buf();
    let name = file.display().to_string();
    tokio::task::spawn_blocking(move || {
        lava_shell::fetch::unpack_archive(&file, Some("gz"), 0, &dest, &name)
    })
    .await
    .map_err(|e| LavaError::bug(e.to_string()))?
    .map_err(LavaError::from)
}
