//! The LAVA overlay: the test shell helper scripts, MultiNode scripts, test definitions
//! and the compressed tarball later applied to the image or unpacked on the device.
//!
//! `lava-overlay` ([`OverlayAction`]) is built only when a test of the block's namespace
//! needs an overlay; `lava-create-overlay` ([`CreateOverlay`]) always is.

use super::testdef::TestDefinitionAction;
use lava_pipeline::BlockLookups;
use lava_pipeline::params::namespace;
use lava_pipeline::{
    Action, Job, LavaError, LavaResult, Params, Pipeline, PipelineBuilder, RunContext,
    ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// Whether the device has a deploy method whose name mentions ssh (LAVA adds
/// `ssh-authorize` to the overlay for those devices).
pub fn device_deploys_over_ssh(job: &Job) -> bool {
    job.device.deploy_methods().is_some_and(|m| {
        m.keys()
            .filter_map(Value::as_str)
            .any(|k| k.contains("ssh"))
    })
}

/// The overlay children: ssh-authorize (ssh-capable devices), lava-multinode-overlay,
/// test-definition, then compress-overlay unless the overlay stays on the worker.
fn add_overlay_children(pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
    if device_deploys_over_ssh(pipeline.job()) {
        pipeline.add(SshAuthorize)?;
    }
    pipeline.add(MultinodeOverlayAction)?;
    pipeline.add(TestDefinitionAction::new())?;
    let params = pipeline.params();
    let to_docker = params.to() == Some("docker");
    let docker_test = params.contains_key("docker") && params.contains_key("definitions");
    if !(to_docker || docker_test) {
        pipeline.add(CompressOverlay)?;
    }
    Ok(())
}

/// What the overlay needs from the job and device, checked at validation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OverlaySettings {
    /// `lava_test_results_dir` with the job id substituted (e.g. `/lava-1234`).
    pub results_dir: String,
    /// `lava_test_sh_cmd` (e.g. `/bin/sh`).
    pub shell: String,
}

/// Read the overlay constants (deployment data, then device `constants.posix`).
pub fn overlay_settings(job: &Job, params: &Params) -> LavaResult<OverlaySettings> {
    let results_dir = job.get_constant("lava_test_results_dir", Some("posix"), params)?;
    let results_dir = lava_pipeline::value::scalar_string(&results_dir).unwrap_or_default();
    let results_dir = substitute_job_id(&results_dir, &job.id)?;
    let shell = job.get_constant("lava_test_sh_cmd", Some("posix"), params)?;
    Ok(OverlaySettings {
        results_dir,
        shell: lava_pipeline::value::scalar_string(&shell).unwrap_or_default(),
    })
}

/// Python's `"%s" % job_id` on the results directory template.
fn substitute_job_id(template: &str, job_id: &str) -> LavaResult<String> {
    let mut out = String::new();
    let mut chars = template.chars();
    let mut used = false;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('s') if !used => {
                out.push_str(job_id);
                used = true;
            }
            _ => {
                return Err(LavaError::job(
                    "Invalid lava_test_results_dir, should include '%s'",
                ));
            }
        }
    }
    Ok(out)
}

/// `lava-create-overlay`: build the overlay whether or not a test asks for it.
#[derive(Debug, Default)]
pub struct CreateOverlay;

impl CreateOverlay {
    /// Creates the `lava-create-overlay` action.
    pub fn new() -> Self {
        CreateOverlay
    }
}

#[async_trait]
impl Action for CreateOverlay {
    action_identity!(
        "lava-create-overlay",
        "CreateOverlay",
        "add lava scripts during deployment for test shell use",
        "overlay the lava support scripts"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        add_overlay_children(pipeline)
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        overlay_settings(ctx.job, &ctx.meta.parameters).map(|_| ())
    }
    async fn run(&mut self, ctx: &mut RunContext, children: &mut Pipeline) -> LavaResult<()> {
        let levels = crate::runtime::test_overlay::repo_action_levels(children);
        crate::runtime::test_overlay::build_overlay(ctx, &levels).await?;
        children.run_actions(ctx).await
    }
}

/// `lava-overlay`: the overlay, only when a test of the namespace needs one (otherwise
/// an empty action that skips at run time).
#[derive(Debug, Default)]
pub struct OverlayAction {
    /// Whether a test of the namespace needs the overlay (decided when populated).
    pub needed: bool,
    /// The results directory unpacked on a `local_overlay` device (the worker's own file
    /// system), removed by cleanup: a real device loses it when it is powered off.
    unpacked_results: Option<std::path::PathBuf>,
}

impl OverlayAction {
    /// Creates the `lava-overlay` action.
    pub fn new() -> Self {
        OverlayAction::default()
    }
}

#[async_trait]
impl Action for OverlayAction {
    action_identity!(
        "lava-overlay",
        "OverlayAction",
        "add lava scripts during deployment for test shell use",
        "overlay the lava support scripts"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let ns = namespace(pipeline.parameters()).to_string();
        self.needed = pipeline.job().test_needs_overlay(&ns);
        if self.needed {
            add_overlay_children(pipeline)?;
        }
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if !self.needed {
            return Ok(());
        }
        overlay_settings(ctx.job, &ctx.meta.parameters).map(|_| ())
    }
    async fn run(&mut self, ctx: &mut RunContext, children: &mut Pipeline) -> LavaResult<()> {
        if !self.needed {
            ctx.logger.info(format!(
                "[{}] skipped lava-overlay - no test action.",
                ctx.namespace()
            ));
            return Ok(());
        }
        // One pass builds the whole tree (what test-definition and its per-definition
        // children describe); the children then only report, and compress-overlay packs it.
        let levels = crate::runtime::test_overlay::repo_action_levels(children);
        crate::runtime::test_overlay::build_overlay(ctx, &levels).await?;
        children.run_actions(ctx).await?;
        if ctx
            .job
            .device
            .parameter("local_overlay")
            .and_then(|v| v.as_bool())
            == Some(true)
        {
            // A device whose file system is the worker's (the local-shell device):
            // the dispatcher unpacks the overlay in place instead of transferring it.
            let results = ctx
                .get_data("test", "results", "lava_test_results_dir")
                .and_then(Value::as_str)
                .filter(|dir| dir.starts_with('/') && dir.len() > 1)
                .map(std::path::PathBuf::from);
            self.unpacked_results = results;
            crate::runtime::test_overlay::unpack_overlay_locally(ctx, std::path::Path::new("/"))
                .await?;
        }
        Ok(())
    }
    async fn cleanup(&mut self, ctx: &mut RunContext) -> LavaResult<()> {
        if let Some(dir) = self.unpacked_results.take() {
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => ctx.logger.debug(format!(
                    "Removed the local results directory {}",
                    dir.display()
                )),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => ctx.logger.warning(format!(
                    "Cannot remove the local results directory {}: {e}",
                    dir.display()
                )),
            }
        }
        Ok(())
    }
}

/// The MultiNode role of the job, as `lava-multinode-overlay` checks it: `Ok(None)` when
/// the job is not a MultiNode group member.
pub fn multinode_role(job: &Job) -> Result<Option<String>, String> {
    let Some(protocol) = job
        .parameters
        .get("protocols")
        .and_then(|p| p.get("lava-multinode"))
    else {
        return Ok(None);
    };
    if protocol.get("target_group").is_none() {
        return Ok(None);
    }
    match protocol.get("role") {
        None => Err("multinode job without a specified role".into()),
        Some(role) => Ok(lava_pipeline::value::scalar_string(role)),
    }
}

/// `lava-multinode-overlay`: the MultiNode helper scripts, for group jobs.
#[derive(Debug, Default)]
pub struct MultinodeOverlayAction;

#[async_trait]
impl Action for MultinodeOverlayAction {
    action_identity!(
        "lava-multinode-overlay",
        "MultinodeOverlayAction",
        "add lava scripts during deployment for multinode test shell use",
        "overlay the lava multinode scripts"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let ns = namespace(&ctx.meta.parameters).to_string();
        if !ctx.job.test_needs_overlay(&ns) {
            return Ok(());
        }
        overlay_settings(ctx.job, &ctx.meta.parameters)?;
        if let Err(e) = multinode_role(ctx.job) {
            ctx.error(e);
        }
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        match multinode_role(&ctx.job) {
            Ok(None) => {
                ctx.logger.debug("skipped lava-multinode-overlay");
                Ok(())
            }
            // `lava-overlay` wrote the helpers with the group's values (see
            // runtime::test_overlay::overlay_request); this step reports them.
            Ok(Some(role)) => {
                ctx.logger.debug(format!(
                    "lava-multinode helper scripts in the overlay for role '{role}'"
                ));
                Ok(())
            }
            Err(message) => Err(lava_pipeline::LavaError::job(message)),
        }
    }
}

/// `compress-overlay`: tar and gzip the overlay directory.
#[derive(Debug, Default)]
pub struct CompressOverlay;

impl CompressOverlay {
    /// Creates the `compress-overlay` action.
    pub fn new() -> Self {
        CompressOverlay
    }
}

#[async_trait]
impl Action for CompressOverlay {
    action_identity!(
        "compress-overlay",
        "CompressOverlay",
        "Create a lava overlay tarball and store alongside the job",
        "Compress the lava overlay files"
    );
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        crate::runtime::test_overlay::compress_overlay(ctx)
            .await
            .map(|_| ())
    }
}

/// LAVA's `check_ssh_identity_file`: the `identity_file` of the device's ssh method.
/// `Err` is the validation message. A relative path names a key shipped with the
/// dispatcher (e.g. `dynamic_vm_keys/lava`) and is resolved at run time.
pub fn ssh_identity_file(methods: Option<&Mapping>) -> Result<String, String> {
    let Some(methods) = methods.filter(|m| !m.is_empty()) else {
        return Err("Invalid parameters".into());
    };
    let Some(ssh) = methods.get("ssh") else {
        return Err(format!(
            "Empty ssh parameter list in device configuration {}",
            lava_pipeline::value::python_repr(&Value::Mapping(methods.clone()))
        ));
    };
    let file = ssh
        .get("identity_file")
        .and_then(Value::as_str)
        .ok_or_else(|| "Missing entry for SSH private key".to_string())?;
    if file.starts_with('/') && !std::path::Path::new(file).exists() {
        return Err(format!("Cannot find SSH private key {file}"));
    }
    Ok(file.to_string())
}

/// `ssh-authorize`: put the worker's public key in the overlay (secondary connections).
#[derive(Debug, Default)]
pub struct SshAuthorize;

#[async_trait]
impl Action for SshAuthorize {
    action_identity!(
        "ssh-authorize",
        "SshAuthorize",
        "include public key in overlay and authorize root user",
        "add public key to authorized_keys"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let params = ctx.meta.params();
        if params.to() == Some("ssh") {
            return Ok(());
        }
        if let Some(authorize) = params.get("authorize")
            && authorize.as_str() != Some("ssh")
        {
            return Ok(());
        }
        if !device_deploys_over_ssh(ctx.job) {
            return Ok(());
        }
        if let Err(e) = ssh_identity_file(ctx.job.device.deploy_methods()) {
            ctx.error(e);
        }
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let Some(identity_file) = authorized_identity(ctx) else {
            ctx.logger.debug("No authorisation required.");
            return Ok(());
        };
        let location = ctx
            .get_data("test", "shared", "location")
            .and_then(Value::as_str)
            .map(std::path::PathBuf::from)
            .ok_or_else(|| lava_pipeline::LavaError::bug("Missing lava overlay location"))?;
        let results_dir = ctx
            .get_data("test", "results", "lava_test_results_dir")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        // Secondary connections (`authorize: ssh`) also get root's authorized_keys.
        let authorize = ctx.meta().parameters.contains_key("authorize");
        let key = crate::runtime::ssh::resolve_identity_file(&identity_file);
        let written =
            tokio::task::spawn_blocking(move || add_keys(&location, &results_dir, &key, authorize))
                .await
                .map_err(|e| lava_pipeline::LavaError::bug(e.to_string()))??;
        for path in written {
            ctx.logger.debug(format!("Added {path} to the overlay"));
        }
        Ok(())
    }
}

/// The identity file `ssh-authorize` puts in the overlay, as LAVA's validation decides it:
/// none for `to: ssh` deploys, for an `authorize` other than `ssh`, or for devices without
/// an ssh deploy method.
fn authorized_identity(ctx: &RunContext) -> Option<String> {
    let params = &ctx.meta().parameters;
    if params.to() == Some("ssh") {
        return None;
    }
    if let Some(authorize) = params.get("authorize")
        && authorize.as_str() != Some("ssh")
    {
        return None;
    }
    if !device_deploys_over_ssh(&ctx.job) {
        return None;
    }
    ssh_identity_file(ctx.job.device.deploy_methods()).ok()
}

/// Copy the key pair into the overlay's results directory and, for secondary connections,
/// append the public key to the overlay's `/root/.ssh/authorized_keys` (LAVA overwrites a
/// test image's file with it when the overlay is unpacked). Returns the overlay paths
/// written; the key's content is never logged.
fn add_keys(
    location: &std::path::Path,
    results_dir: &str,
    key: &std::path::Path,
    authorize: bool,
) -> LavaResult<Vec<String>> {
    use std::io::Write;
    let failed = |what: &str, path: &std::path::Path, e: std::io::Error| {
        lava_pipeline::LavaError::infrastructure(format!(
            "Unable to {what} {}: {e}",
            path.display()
        ))
    };
    if !location.is_dir() {
        return Err(lava_pipeline::LavaError::bug(
            "Unable to find overlay location",
        ));
    }
    let lava_path = location.join(results_dir.trim_start_matches('/'));
    let name = key
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "id".to_string());
    let public = std::path::PathBuf::from(format!("{}.pub", key.display()));
    let mut written = Vec::new();
    for (from, to) in [
        (key.to_path_buf(), lava_path.join(&name)),
        (public.clone(), lava_path.join(format!("{name}.pub"))),
    ] {
        std::fs::copy(&from, &to).map_err(|e| failed("copy", &from, e))?;
        written.push(format!(
            "{results_dir}/{}",
            to.file_name().unwrap_or_default().to_string_lossy()
        ));
    }
    if !authorize {
        return Ok(written);
    }
    let ssh_dir = location.join("root/.ssh");
    std::fs::create_dir_all(&ssh_dir).map_err(|e| failed("create", &ssh_dir, e))?;
    let public_key = std::fs::read(&public).map_err(|e| failed("read", &public, e))?;
    let keys = ssh_dir.join("authorized_keys");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&keys)
        .map_err(|e| failed("open", &keys, e))?;
    file.write_all(&public_key)
        .map_err(|e| failed("write", &keys, e))?;
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o700));
        let _ = std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600));
    }
    written.push("/root/.ssh/authorized_keys".to_string());
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_pair(dir: &std::path::Path) -> std::path::PathBuf {
        let key = dir.join("lava");
        std::fs::write(&key, "PRIVATE\n").unwrap();
        std::fs::write(dir.join("lava.pub"), "ssh-ed25519 AAAA lava\n").unwrap();
        key
    }

    #[test]
    fn ssh_authorize_copies_the_keys_and_authorizes_root_for_secondary_connections() {
        let keys = tempfile::tempdir().unwrap();
        let key = key_pair(keys.path());
        let overlay = tempfile::tempdir().unwrap();
        std::fs::create_dir(overlay.path().join("lava-42")).unwrap();
        std::fs::create_dir_all(overlay.path().join("root/.ssh")).unwrap();
        std::fs::write(
            overlay.path().join("root/.ssh/authorized_keys"),
            "ssh-rsa BBBB earlier\n",
        )
        .unwrap();

        let written = add_keys(overlay.path(), "/lava-42", &key, true).unwrap();
        assert_eq!(
            written,
            [
                "/lava-42/lava",
                "/lava-42/lava.pub",
                "/root/.ssh/authorized_keys"
            ]
        );
        let read = |p: &str| std::fs::read_to_string(overlay.path().join(p)).unwrap();
        assert_eq!(read("lava-42/lava"), "PRIVATE\n");
        assert_eq!(read("lava-42/lava.pub"), "ssh-ed25519 AAAA lava\n");
        assert_eq!(
            read("root/.ssh/authorized_keys"),
            "ssh-rsa BBBB earlier\nssh-ed25519 AAAA lava\n"
        );
    }

    #[test]
    fn ssh_authorize_without_authorize_only_copies_the_keys() {
        let keys = tempfile::tempdir().unwrap();
        let key = key_pair(keys.path());
        let overlay = tempfile::tempdir().unwrap();
        std::fs::create_dir(overlay.path().join("lava-7")).unwrap();
        let written = add_keys(overlay.path(), "/lava-7", &key, false).unwrap();
        assert_eq!(written, ["/lava-7/lava", "/lava-7/lava.pub"]);
        assert!(!overlay.path().join("root").exists());
    }

    #[test]
    fn ssh_authorize_names_a_missing_public_key() {
        let keys = tempfile::tempdir().unwrap();
        let key = keys.path().join("only-private");
        std::fs::write(&key, "PRIVATE\n").unwrap();
        let overlay = tempfile::tempdir().unwrap();
        std::fs::create_dir(overlay.path().join("lava-7")).unwrap();
        let error = add_keys(overlay.path(), "/lava-7", &key, true).unwrap_err();
        assert!(
            error.message.contains("only-private.pub"),
            "{}",
            error.message
        );
        assert!(!error.message.contains("PRIVATE"));
    }
}
