//! Devices reached over SSH, at run time: LAVA's primary SSH connection (deploy
//! `to: ssh`, boot `method: ssh`).
//!
//! Deploy (`scp-overlay`): after the overlay is built and compressed,
//! [`prepare_scp_overlay`] (`prepare-scp-overlay`) records the tarball to copy, the
//! deployment's `tar_flags`, and, for a secondary connection, the host address received
//! in the MultiNode message its protocol block waits for.
//!
//! Boot (`login-ssh`): [`scp_deploy`] (`scp-deploy`) copies the tarball to the device
//! next to the results directory, as LAVA does (`<lava_test_results_dir>-<tarball
//! name>`, i.e. `/lava-<job id>-overlay-<level>.tar.gz` with LAVA's default constants);
//! [`prepare_ssh`] (`prepare-ssh`) settles the host address (the device's `host`, or
//! the MultiNode value named by the boot's `parameters.hostID`); [`connect_ssh`]
//! (`ssh-connection`) opens a shell on a pseudo-terminal and installs it as the
//! namespace's [`ConsoleConnection`], so `auto-login-action`, `expect-shell-connection`,
//! `export-device-env` and the test shell run over it unchanged; [`unpack_overlay`]
//! (`scp-overlay-unpack`) types LAVA's `tar -C / -xzf <copy>` into that shell and checks
//! its exit status.
//!
//! The connection parameters are the device's `actions.deploy.methods.ssh` block
//! (`host`, `port`, `user`, `identity_file`, `options`) read into an [`SshParams`], with
//! the host replaced by the address `prepare-ssh` settled: the same struct opens a
//! connection to a host learnt at run time. A relative `identity_file` (LAVA's
//! `dynamic_vm_keys/lava`) names a key shipped with LAVA's dispatcher and is looked up
//! in its installed package; lava-rs ships no key of its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lava_connection::ssh::{DEFAULT_SSH_PORT, IgnoredOption};
use lava_connection::{PtyRequest, SshClient, SshError, SshParams};
use lava_pipeline::value::scalar_string;
use lava_pipeline::{LavaError, LavaResult, RunContext};
use serde_yaml::Value;
use tokio::time::Instant;

use crate::runtime::console::{
    ConsoleConnection, action_timeout, boot_session_config, on_console, wait_deadline, wait_error,
};
use lava_python::shlex_quote;

/// Where LAVA's dispatcher package keeps the keys its device types name relatively.
pub const LAVA_DISPATCHER_KEY_DIRS: &[&str] = &["/usr/lib/python3/dist-packages/lava_dispatcher"];

/// LAVA's user when the device names none.
const DEFAULT_SSH_USER: &str = "root";

/// Time given to an SSH connection to say goodbye after a copy.
const DISCONNECT_GRACE: Duration = Duration::from_secs(5);

/// The device's `ssh` parameters as [`SshParams`] (host as configured, possibly empty)
/// and the options that have no effect on this client.
pub fn device_ssh_params(ctx: &RunContext) -> LavaResult<(SshParams, Vec<IgnoredOption>)> {
    let ssh = ctx
        .job
        .device
        .deploy_method("ssh")
        .and_then(Value::as_mapping)
        .ok_or_else(|| {
            LavaError::configuration("Missing ssh parameters in the device configuration")
        })?;
    let text = |key: &str| {
        ssh.get(key)
            .and_then(scalar_string)
            .filter(|s| !s.is_empty())
    };
    let port = match text("port") {
        None => DEFAULT_SSH_PORT,
        Some(port) => port.parse().map_err(|_| {
            LavaError::configuration(format!(
                "Invalid ssh port '{port}' in actions.deploy.methods.ssh.port"
            ))
        })?,
    };
    let identity_file = text("identity_file")
        .ok_or_else(|| LavaError::configuration("Missing entry for SSH private key"))?;
    let mut params = SshParams::new(
        text("host").unwrap_or_default(),
        port,
        text("user").unwrap_or_else(|| DEFAULT_SSH_USER.to_string()),
        resolve_identity_file(&identity_file),
    );
    let options: Vec<String> = match ssh.get("options") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(items)) => items.iter().filter_map(scalar_string).collect(),
        Some(other) => {
            return Err(LavaError::configuration(format!(
                "[ssh] Invalid ssh options: {}",
                lava_pipeline::value::python_repr(other)
            )));
        }
    };
    let ignored = params.apply_options(&options)?;
    Ok((params, ignored))
}

/// An absolute key path as is; a relative one in LAVA's dispatcher package when it is
/// there, else relative to the working directory (the error will name it).
pub fn resolve_identity_file(file: &str) -> PathBuf {
    let path = Path::new(file);
    if path.is_absolute() {
        return path.to_path_buf();
    }
    LAVA_DISPATCHER_KEY_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(path))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| path.to_path_buf())
}

/// The address to connect to: the MultiNode value named by the block's
/// `parameters.hostID` (a secondary connection), else the device's `host`.
pub fn host_address(ctx: &RunContext) -> LavaResult<String> {
    let host_id = ctx
        .meta()
        .param("parameters")
        .and_then(|p| p.get("hostID"))
        .and_then(scalar_string);
    if let Some(id) = host_id {
        return ctx
            .get_data("prepare-scp-overlay", "prepare-scp-overlay", &id)
            .and_then(scalar_string)
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                LavaError::job(format!(
                    "Unable to retrieve the host address: no MultiNode data for hostID '{id}'"
                ))
            });
    }
    let (params, _) = device_ssh_params(ctx)?;
    if params.host.is_empty() {
        return Err(LavaError::configuration(
            "Unable to retrieve the host address: actions.deploy.methods.ssh.host is empty in the device configuration",
        ));
    }
    Ok(params.host)
}

/// The parameters of the connection the running action opens: the device's, with the
/// host `prepare-ssh` settled (or found now). Ignored options are logged.
pub fn connection_params(ctx: &RunContext) -> LavaResult<SshParams> {
    let (mut params, ignored) = device_ssh_params(ctx)?;
    params.host = match ctx
        .get_data("prepare-ssh", "ssh-connection", "host_address")
        .and_then(scalar_string)
    {
        Some(host) => host,
        None => host_address(ctx)?,
    };
    for option in ignored {
        ctx.logger.debug(option.to_string());
    }
    Ok(params)
}

/// `prepare-scp-overlay`: record the compressed overlay for `scp-deploy`, the
/// deployment's `tar_flags` for `scp-overlay-unpack` and the MultiNode host addresses
/// of `host_keys` (the `messageID`s of the block's protocol calls).
pub async fn prepare_scp_overlay(ctx: &mut RunContext, host_keys: &[String]) -> LavaResult<()> {
    let overlay = ctx
        .get_data("compress-overlay", "output", "file")
        .and_then(scalar_string)
        .ok_or_else(|| LavaError::job("No compressed overlay to copy over ssh"))?;
    let name = Path::new(&overlay)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    ctx.logger.info(format!("Preparing to copy: {name}"));
    ctx.set_data("prepare-scp-overlay", "scp-deploy", "overlay", overlay);
    let tar_flags = ctx
        .meta()
        .param("deployment_data")
        .and_then(|d| d.get("tar_flags"))
        .and_then(scalar_string)
        .unwrap_or_default();
    ctx.set_data("scp-overlay", "scp-overlay", "tar_flags", tar_flags);
    for key in host_keys {
        record_multinode_host(ctx, key);
    }
    Ok(())
}

/// Copies the value received in MultiNode message `message_id` (under the key the
/// protocol block's `message` names) to `prepare-scp-overlay/<message_id>`.
fn record_multinode_host(ctx: &mut RunContext, message_id: &str) {
    let Some(data) = ctx
        .get_data("lava-multinode", "lava-multinode", message_id)
        .and_then(Value::as_mapping)
        .cloned()
    else {
        ctx.logger
            .warning(format!("Missing data for host_key {message_id}"));
        return;
    };
    let calls = ctx
        .meta()
        .param("protocols")
        .and_then(|p| p.get("lava-multinode"))
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    for call in &calls {
        if call.get("messageID").and_then(scalar_string).as_deref() != Some(message_id) {
            continue;
        }
        let Some(message) = call.get("message").and_then(Value::as_mapping) else {
            continue;
        };
        for key in message.keys().filter_map(scalar_string) {
            match data.get(key.as_str()).and_then(scalar_string) {
                Some(value) => {
                    ctx.logger
                        .info(format!("data {message_id} replacement key is {value}"));
                    ctx.set_data(
                        "prepare-scp-overlay",
                        "prepare-scp-overlay",
                        message_id,
                        value,
                    );
                }
                None => ctx.logger.error(format!(
                    "Mismatched replacement key {key} and received data {:?}",
                    data.keys().filter_map(scalar_string).collect::<Vec<_>>()
                )),
            }
        }
    }
}

/// `scp-deploy`: copy the overlay tarball to `<lava_test_results_dir>-<tarball name>`
/// on the device and record that path for `scp-overlay-unpack`.
pub async fn scp_deploy(ctx: &mut RunContext) -> LavaResult<()> {
    let overlay = ctx
        .get_data("prepare-scp-overlay", "scp-deploy", "overlay")
        .and_then(scalar_string)
        .ok_or_else(|| {
            LavaError::job(format!(
                "{}: could not find details of 'overlay'",
                ctx.meta().name
            ))
        })?;
    let results_dir = ctx
        .get_data("test", "results", "lava_test_results_dir")
        .and_then(scalar_string)
        .ok_or_else(|| LavaError::job("No lava_test_results_dir: no overlay was built"))?;
    let overlay = PathBuf::from(overlay);
    let name = overlay
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let destination = format!("{results_dir}-{name}");
    let params = connection_params(ctx)?;
    ctx.logger.info(format!(
        "Copying overlay {} to {}:{destination}",
        overlay.display(),
        params.describe()
    ));
    let client = open_client(ctx, &params).await?;
    let copied = client
        .upload(&overlay, &destination, ctx.deadline())
        .await
        .map_err(|e| ssh_failure(ctx, e));
    client
        .disconnect(DISCONNECT_GRACE.min(ctx.remaining()))
        .await;
    let copied = copied?;
    ctx.logger
        .debug(format!("Copied {copied} bytes to {destination}"));
    ctx.set_result("success", "ssh deployment");
    ctx.set_data("scp-deploy", "scp-overlay-unpack", "overlay", destination);
    Ok(())
}

/// `prepare-ssh`: settle the address `ssh-connection` connects to.
pub async fn prepare_ssh(ctx: &mut RunContext) -> LavaResult<()> {
    let host = host_address(ctx)?;
    ctx.logger.info(format!("Using host address {host}"));
    ctx.set_data("prepare-ssh", "ssh-connection", "host_address", host);
    Ok(())
}

/// `ssh-connection`: log in over SSH and install the shell as the namespace's console.
/// An existing console is kept ("Already connected").
pub async fn connect_ssh(ctx: &mut RunContext) -> LavaResult<()> {
    if ctx.connection_as::<ConsoleConnection>().is_some() {
        ctx.logger.debug("Already connected");
        return Ok(());
    }
    let params = connection_params(ctx)?;
    let namespace = ctx.connection_namespace();
    ctx.logger.info(format!(
        "[{namespace}] {} Connecting to device using ssh {}",
        ctx.meta().name,
        params.describe()
    ));
    let client = open_client(ctx, &params).await?;
    let shell = client
        .into_shell(&PtyRequest::default(), ctx.deadline())
        .await
        .map_err(|e| ssh_failure(ctx, e))?;
    let config = boot_session_config(ctx);
    let console = ConsoleConnection::over_transport(shell, ctx.logger.clone(), &namespace, config)?;
    ctx.set_connection(Box::new(console));
    Ok(())
}

/// `scp-overlay-unpack`: unpack the copied overlay at `/` in the device's shell.
pub async fn unpack_overlay(ctx: &mut RunContext) -> LavaResult<()> {
    let copy = ctx
        .get_data("scp-deploy", "scp-overlay-unpack", "overlay")
        .and_then(scalar_string)
        .ok_or_else(|| LavaError::job("No overlay was copied to the device"))?;
    let tar_flags = ctx
        .get_data("scp-overlay", "scp-overlay", "tar_flags")
        .and_then(scalar_string)
        .unwrap_or_default();
    let command = unpack_command(&tar_flags, &copy);
    on_console!(ctx, console => unpack_inner(ctx, console, &command))
}

/// LAVA's unpack command: `tar [<tar_flags>] -C / -xzf <copy>`.
pub fn unpack_command(tar_flags: &str, copy: &str) -> String {
    let copy = shlex_quote(copy);
    if tar_flags.trim().is_empty() {
        format!("tar -C / -xzf {copy}")
    } else {
        format!("tar {} -C / -xzf {copy}", tar_flags.trim())
    }
}

/// The marker printed with the unpack's exit status.
const UNPACK_STATUS: &str = "LAVA_SCP_UNPACK";

async fn unpack_inner(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    command: &str,
) -> LavaResult<()> {
    let line = format!("{command} ; printf '<{UNPACK_STATUS} %s>\\n' $?");
    console.session().sendline(&line).await?;
    let status = format!(r"<{UNPACK_STATUS} (\d+)>");
    let found = console
        .session()
        .expect(&[status.as_str()], wait_deadline(ctx))
        .await
        .map_err(|e| wait_error(ctx, e))?;
    let code = found.group(1).unwrap_or("0").to_string();
    console
        .session()
        .wait_for_prompt(wait_deadline(ctx))
        .await
        .map_err(|e| wait_error(ctx, e))?;
    if code != "0" {
        return Err(LavaError::infrastructure(format!(
            "Unable to unpack the overlay on the device: '{command}' failed with exit status {code}"
        )));
    }
    Ok(())
}

/// Connects with the running action's deadline, logging where and with which key file
/// (its path only) and the server's host key.
pub(crate) async fn open_client(ctx: &mut RunContext, params: &SshParams) -> LavaResult<SshClient> {
    ctx.logger.debug(format!(
        "Connecting to {} with identity file {}",
        params.describe(),
        params.identity_file.display()
    ));
    let client = SshClient::connect(params, ctx.deadline())
        .await
        .map_err(|e| ssh_failure(ctx, e))?;
    ctx.logger.debug(format!(
        "Host key of {}: {} (accepted without a known_hosts check, as LAVA's StrictHostKeyChecking=no)",
        params.address(),
        client.server_key()
    ));
    Ok(client)
}

/// An SSH error, or the action's own timeout once its deadline has passed.
pub(crate) fn ssh_failure(ctx: &RunContext, e: SshError) -> LavaError {
    if matches!(e, SshError::TimedOut { .. }) && Instant::now() >= ctx.deadline() {
        action_timeout(ctx)
    } else {
        LavaError::from(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpack_command_is_lavas() {
        assert_eq!(
            unpack_command("", "/lava-42-overlay-1.1.3.tar.gz"),
            "tar -C / -xzf /lava-42-overlay-1.1.3.tar.gz"
        );
        assert_eq!(
            unpack_command("--warning no-timestamp", "/lava-42-overlay.tar.gz"),
            "tar --warning no-timestamp -C / -xzf /lava-42-overlay.tar.gz"
        );
        assert_eq!(
            unpack_command("", "/tmp/a b/lava-42-o.tar.gz"),
            "tar -C / -xzf '/tmp/a b/lava-42-o.tar.gz'"
        );
    }

    #[test]
    fn relative_keys_are_looked_up_in_lavas_package() {
        assert_eq!(
            resolve_identity_file("/etc/lava/key"),
            PathBuf::from("/etc/lava/key")
        );
        let relative = resolve_identity_file("no-such-dir/key");
        assert_eq!(relative, PathBuf::from("no-such-dir/key"));
    }
}
