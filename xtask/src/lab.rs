//! `cargo xtask lab`: a real LAVA lab on this machine — Debian's lava-server 2023.01 with
//! PostgreSQL, on loopback, without systemd — set up by `lava_test_support::lab` (the same
//! code the end-to-end tests start it with). `--stop` ends everything it started; `--port`
//! picks the web/API port (a free one otherwise). Prints the URL, the API token, the worker
//! and how to run a worker with our `lava-run`.

use anyhow::{Context, Result, bail};
use lava_test_support::lab::{self, LabOptions};

pub fn run(args: &[String]) -> Result<()> {
    let mut options = LabOptions::default();
    let mut stop = false;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--stop" => stop = true,
            "--port" => {
                let port = iter.next().context("--port needs a port number")?;
                options.port = Some(
                    port.parse()
                        .with_context(|| format!("--port {port:?}: expected a port number"))?,
                );
            }
            other => bail!("unknown option {other:?}: expected --stop or --port PORT"),
        }
    }
    if stop {
        lab::stop()?;
        println!("lab stopped (gunicorn, lava-scheduler; PostgreSQL if the lab started it)");
        return Ok(());
    }
    println!("==> starting the lab (installs lava-server on first use; this takes a while)");
    let (info, started) = lab::start(&options)?;
    let state = lab::state_dir();
    println!(
        "{}\n\
         server:        {url} (loopback only)\n\
         API token:     {token} (user {admin}; `Authorization: Token {token}` on {url}api/v0.2/)\n\
         worker:        {worker}, token {worker_token}\n\
         devices:       {shell} (local-shell), {qemu} (qemu)\n\
         state, logs:   {state} (lab.env, *.pid, gunicorn.log, scheduler.log)\n\
         run a worker whose jobs run our lava-run ({bin} is first on their PATH):\n  \
         ln -sf $PWD/target/debug/lava-run {bin}/lava-run\n  \
         PATH=/usr/sbin:/usr/bin:/sbin:/bin /usr/bin/lava-worker --name {worker} \
         --url {url} --token {worker_token} --worker-dir /var/lib/lava-rs-lab/worker\n\
         stop it:       cargo xtask lab --stop",
        if started {
            "lab started"
        } else {
            "lab already running (nothing changed)"
        },
        url = info.url,
        token = info.api_token,
        admin = info.admin_user,
        worker = info.worker_name,
        worker_token = info.worker_token,
        shell = lab::LOCAL_SHELL_DEVICE,
        qemu = lab::QEMU_DEVICE,
        state = state.display(),
        bin = lab::LAVA_RUN_DIR,
    );
    Ok(())
}
