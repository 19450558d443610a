//! Disposable chroots on an SSH device, at run time: a deployment's `chroot: NAME` makes
//! `login-ssh` enter a fresh schroot session (`schroot-login`) and `finalize` end it.
//!
//! [`enter_session`] types into the SSH shell on the device: `schroot -b -c NAME` (the
//! session's id, checked by its exit status), the overlay tarball `scp-deploy` left on the
//! host moved into the session at the same path (the session cannot see the host's file
//! system, and the host keeps nothing of the job), then `schroot -r -c SESSION -d / -- /bin/sh -l`, and checks that the shell
//! now answering is inside that session (`$SCHROOT_SESSION_ID`). The actions after it
//! (`expect-shell-connection`, `export-device-env`, `scp-overlay-unpack`, the test shell)
//! run inside the chroot unchanged. Any failure is an InfrastructureError: the chroot is
//! the lab's.
//!
//! [`end_sessions`] runs in `finalize`, after the console is closed: for every session a
//! namespace began, a new SSH connection runs `schroot -e -c SESSION`, so the next job
//! starts from a clean chroot whatever state the test left the shell in.

use std::time::Duration;

use lava_pipeline::value::scalar_string;
use lava_pipeline::{LavaError, LavaResult, RunContext};
use lava_python::shlex_quote;

use crate::runtime::console::{ConsoleConnection, on_console, wait_deadline, wait_error};
use crate::runtime::ssh::{device_ssh_params, open_client, ssh_failure};

/// Where `schroot-login` records the session (namespace data: action, label).
const SESSION_DATA: (&str, &str) = ("schroot-login", "schroot");

/// How many times `finalize` tries to end a session (a shell still dying in it can hold
/// its mounts a moment), and the pause between tries.
const END_ATTEMPTS: u32 = 3;
const END_PAUSE: Duration = Duration::from_secs(1);

/// Time given to the finalize connection to say goodbye.
const DISCONNECT_GRACE: Duration = Duration::from_secs(5);

/// The marker each step prints: `<LAVA_SCHROOT step status value>`.
const MARKER: &str = "LAVA_SCHROOT";

/// `schroot-login`: begin a session of `chroot`, copy the overlay into it, and enter it.
pub async fn enter_session(ctx: &mut RunContext, chroot: &str) -> LavaResult<()> {
    ctx.logger.info(format!("Entering {chroot} schroot"));
    let copy = ctx
        .get_data("scp-deploy", "scp-overlay-unpack", "overlay")
        .and_then(scalar_string);
    let host = ctx
        .get_data("prepare-ssh", "ssh-connection", "host_address")
        .and_then(scalar_string)
        .unwrap_or_default();
    let chroot = chroot.to_string();
    let session = on_console!(ctx, console => enter_inner(ctx, console, &chroot, copy.as_deref()))?;
    ctx.logger
        .info(format!("schroot session {session} of {chroot} entered"));
    let (action, label) = SESSION_DATA;
    ctx.set_data(action, label, "session", session);
    ctx.set_data(action, label, "chroot", chroot);
    ctx.set_data(action, label, "host", host);
    Ok(())
}

async fn enter_inner(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    chroot: &str,
    copy: Option<&str>,
) -> LavaResult<String> {
    let name = shlex_quote(chroot);
    let begin = format!(
        "LAVA_SCHROOT_SESSION=$(schroot -b -c {name}) ; printf '<{MARKER} begin %s %s>\\n' $? \"$LAVA_SCHROOT_SESSION\""
    );
    let (status, session) = run_step(ctx, console, &begin, "begin").await?;
    if status != "0" || session.is_empty() {
        return Err(LavaError::infrastructure(format!(
            "Unable to begin a session of schroot '{chroot}': 'schroot -b -c {chroot}' failed with exit status {status}"
        )));
    }
    let quoted_session = shlex_quote(&session);
    if let Some(copy) = copy {
        let path = shlex_quote(copy);
        // Moved, not copied: the host keeps nothing of the job.
        let line = format!(
            "schroot -r -c {quoted_session} -d / -- sh -c 'mkdir -p \"$(dirname \"$1\")\" && cat > \"$1\"' sh {path} < {path} && rm -f {path} ; printf '<{MARKER} copy %s ->\\n' $?"
        );
        let (status, _) = run_step(ctx, console, &line, "copy").await?;
        if status != "0" {
            return Err(LavaError::infrastructure(format!(
                "Unable to copy the overlay {copy} into schroot session {session}: exit status {status}"
            )));
        }
    }
    console
        .session()
        .sendline(&format!(
            "schroot -r -c {quoted_session} -d / -- /bin/sh -l"
        ))
        .await?;
    let check = format!("printf '<{MARKER} inside %s %s>\\n' 0 \"${{SCHROOT_SESSION_ID:--}}\"");
    let (_, inside) = run_step(ctx, console, &check, "inside").await?;
    if inside != session {
        return Err(LavaError::infrastructure(format!(
            "Unable to enter schroot session {session}: the shell reports session '{inside}'"
        )));
    }
    Ok(session)
}

/// Sends `line` and waits for its marker `<LAVA_SCHROOT step status value>`, then for the
/// prompt. Returns (status, value).
async fn run_step(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    line: &str,
    step: &str,
) -> LavaResult<(String, String)> {
    console.session().sendline(line).await?;
    // The echoed command line carries "%s" where the marker carries values.
    let pattern = format!(r"<{MARKER} {step} (\d+) ?([^\s>]*)>");
    let found = console
        .session()
        .expect(&[pattern.as_str()], wait_deadline(ctx))
        .await
        .map_err(|e| wait_error(ctx, e))?;
    let status = found.group(1).unwrap_or_default().to_string();
    let value = found.group(2).unwrap_or_default().to_string();
    console
        .session()
        .wait_for_prompt(wait_deadline(ctx))
        .await
        .map_err(|e| wait_error(ctx, e))?;
    Ok((status, value))
}

/// `finalize`: end every schroot session a namespace of this job began, each over a new
/// SSH connection. Every session is tried; the first failure is returned.
pub async fn end_sessions(ctx: &mut RunContext) -> LavaResult<()> {
    let (action, label) = SESSION_DATA;
    let sessions: Vec<(String, String, String)> = ctx
        .data
        .namespaces()
        .filter_map(|ns| {
            let get = |key: &str| {
                ctx.data
                    .get(ns, action, label, key)
                    .and_then(scalar_string)
                    .filter(|s| !s.is_empty())
            };
            Some((
                get("session")?,
                get("chroot").unwrap_or_default(),
                get("host")?,
            ))
        })
        .collect();
    let mut first_error = None;
    for (session, chroot, host) in sessions {
        match end_session(ctx, &session, &host).await {
            Ok(()) => ctx
                .logger
                .info(format!("schroot session {session} of {chroot} ended")),
            Err(e) => {
                ctx.logger.error(e.to_string());
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn end_session(ctx: &mut RunContext, session: &str, host: &str) -> LavaResult<()> {
    let (mut params, _) = device_ssh_params(ctx)?;
    params.host = host.to_string();
    let client = open_client(ctx, &params).await?;
    let command = format!("schroot -e -c {}", shlex_quote(session));
    let mut outcome = Ok(());
    for attempt in 1..=END_ATTEMPTS {
        outcome = match client.exec(&command, ctx.deadline()).await {
            Ok(output) if output.success() => Ok(()),
            Ok(output) => Err(LavaError::infrastructure(format!(
                "Unable to end schroot session {session}: '{command}' {}",
                output.describe_failure()
            ))),
            Err(e) => Err(ssh_failure(ctx, e)),
        };
        if outcome.is_ok() || attempt == END_ATTEMPTS {
            break;
        }
        tokio::time::sleep(END_PAUSE.min(ctx.remaining())).await;
    }
    client
        .disconnect(DISCONNECT_GRACE.min(ctx.remaining()))
        .await;
    outcome
}
