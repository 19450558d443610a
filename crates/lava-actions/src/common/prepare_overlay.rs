//! Preparing TFTP/NFS deployments once the files are downloaded: unpack the NFS root
//! filesystem or the ramdisk, add kernel modules and the LAVA overlay, convert the kernel
//! for the bootloader and rebuild the ramdisk (`prepare-tftp-overlay` and its children).

use crate::common::power::{require_tool, wait_bounded};
use lava_pipeline::BlockLookups;
use lava_pipeline::params::namespace;
use lava_pipeline::value::{scalar_string, truthy};
use lava_pipeline::{
    Action, ActionMeta, Device, ErrorKind, LavaResult, Pipeline, PipelineBuilder, RunContext,
    Runnable, ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};
use std::process::{Command, Stdio};
use std::time::Duration;

/// `params[key].get(flag, True)` for an image entry such as `ramdisk` or `nfsrootfs`.
fn image_flag(params: &Mapping, key: &str, flag: &str) -> bool {
    params
        .get(key)
        .and_then(|v| v.get(flag))
        .map(|v| truthy(Some(v)))
        .unwrap_or(true)
}

/// Whether the ramdisk is left untouched (`install_modules: false` and
/// `install_overlay: false`).
fn ramdisk_untouched(params: &Mapping) -> bool {
    !image_flag(params, "ramdisk", "install_modules")
        && !image_flag(params, "ramdisk", "install_overlay")
}

/// `prepare-tftp-overlay`: the preparation steps, each a no-op unless its image is part
/// of the deployment.
#[derive(Debug, Default)]
pub struct PrepareOverlayTftp;

impl PrepareOverlayTftp {
    /// Creates the `prepare-tftp-overlay` action.
    pub fn new() -> Self {
        PrepareOverlayTftp
    }
}

#[async_trait]
impl Action for PrepareOverlayTftp {
    action_identity!(
        "prepare-tftp-overlay",
        "PrepareOverlayTftp",
        "extract ramdisk or nfsrootfs in preparation for lava overlay",
        "extract ramdisk or nfsrootfs"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let params = pipeline.params();
        pipeline.add(ExtractNfsRootfs::new())?;
        pipeline.add(ParsePersistentNFS::new())?;
        pipeline.add(ExtractRamdisk::new())?;
        pipeline.add(ExtractModules::new())?;
        if pipeline.job().test_needs_overlay(namespace(&params)) {
            pipeline.add(ApplyOverlayTftp::new())?;
        }
        if kernel_has_type(&params) {
            pipeline.add(PrepareKernelAction::new())?;
        }
        pipeline.add(ConfigurePreseedFile::new())?;
        pipeline.add(CompressRamdisk::new())?;
        if pipeline.device().has_boot_method("depthcharge") {
            pipeline.add(PrepareKernelAction::new())?;
        }
        Ok(())
    }
}

/// Whether the block's `kernel` declares a `type` (a conversion may be needed).
pub fn kernel_has_type(params: &Mapping) -> bool {
    params
        .get("kernel")
        .and_then(Value::as_mapping)
        .is_some_and(|k| k.contains_key("type"))
}

/// Which image an extract-rootfs style action unpacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootfsKind {
    /// `rootfs`, unpacked for an image deployment.
    Rootfs,
    /// `nfsrootfs`, unpacked into the directory exported over NFS.
    Nfs,
}

/// `extract-rootfs`: unpack the root filesystem tarball, ready for the overlay.
#[derive(Debug)]
pub struct ExtractRootfs {
    kind: RootfsKind,
}

impl ExtractRootfs {
    /// Creates the `extract-rootfs` action.
    pub fn new() -> Self {
        ExtractRootfs {
            kind: RootfsKind::Rootfs,
        }
    }

    /// The block key holding the image (`rootfs` / `nfsrootfs`).
    pub fn param_key(&self) -> &'static str {
        match self.kind {
            RootfsKind::Rootfs => "rootfs",
            RootfsKind::Nfs => "nfsrootfs",
        }
    }
}

impl Default for ExtractRootfs {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Action for ExtractRootfs {
    action_identity!(
        "extract-rootfs",
        "ExtractRootfs",
        "unpack rootfs",
        "unpack rootfs, ready to apply lava overlay"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    /// LAVA does nothing when the block has no such image; unpacking one is not written yet.
    fn runnable(&self, meta: &ActionMeta) -> Runnable {
        if lava_pipeline::value::truthy(meta.param(self.param_key())) {
            Runnable::NOT_YET
        } else {
            Runnable::Yes
        }
    }
    async fn run(&mut self, _ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        Ok(())
    }
}

/// `extract-nfsrootfs`: unpack the NFS root filesystem (optionally under a `prefix`).
#[derive(Debug)]
pub struct ExtractNfsRootfs {
    inner: ExtractRootfs,
}

impl ExtractNfsRootfs {
    /// Creates the `extract-nfsrootfs` action.
    pub fn new() -> Self {
        ExtractNfsRootfs {
            inner: ExtractRootfs {
                kind: RootfsKind::Nfs,
            },
        }
    }

    /// LAVA's checks of the `nfsrootfs` entry.
    pub fn check(&self, params: &Mapping, errors: &mut Vec<String>) {
        let Some(entry) = params.truthy_value(self.inner.param_key()) else {
            return;
        };
        // LAVA also checks that a download recorded the file; every deployment adding
        // this action downloads `nfsrootfs` first, so that cannot be missing here.
        if let Some(prefix) = entry.get("prefix") {
            let prefix = scalar_string(prefix).unwrap_or_default();
            if prefix.starts_with('/') {
                errors.push("prefix must not be an absolute path".into());
            }
            if !prefix.ends_with('/') {
                errors.push("prefix must be a directory and end with /".into());
            }
        }
    }
}

impl Default for ExtractNfsRootfs {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Action for ExtractNfsRootfs {
    action_identity!(
        "extract-nfsrootfs",
        "ExtractNfsRootfs",
        "unpack nfsrootfs",
        "unpack nfsrootfs, ready to apply lava overlay"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        self.check(&ctx.meta.parameters, &mut errors);
        ctx.add_errors(errors);
        Ok(())
    }
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        if !truthy(ctx.meta().param("nfsrootfs")) {
            return Ok(());
        }
        crate::runtime::tftp::extract_nfsrootfs(ctx).await
    }
}

/// Replace `{KEY}` placeholders of `address` with the device `static_info` entries.
pub fn substitute_static_info(address: &str, device: &Device) -> String {
    let mut out = address.to_string();
    if let Some(infos) = device.lookup(&["static_info"]).and_then(Value::as_sequence) {
        for info in infos.iter().filter_map(Value::as_mapping) {
            for (k, v) in info {
                if let (Some(k), Some(v)) = (k.as_str(), v.as_str()) {
                    out = out.replace(&format!("{{{k}}}"), v);
                }
            }
        }
    }
    out
}

/// Ask the NFS server whether it serves NFSv3 (`rpcinfo -t SERVER nfs 3`); the error text
/// when it does not, as LAVA's `rpcinfo_nfs`.
fn rpcinfo_nfs(server: &str) -> LavaResult<Option<String>> {
    let rpcinfo = require_tool("rpcinfo")?;
    let child = Command::new(rpcinfo)
        .args(["-t", server, "nfs", "3"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Ok(Some(format!("rpcinfo: {server} {e}"))),
    };
    if wait_bounded(&mut child, Duration::from_secs(10)).is_none() {
        return Ok(Some(format!("rpcinfo: {server} timed out")));
    }
    let output = child
        .wait_with_output()
        .map_err(|e| lava_pipeline::LavaError::infrastructure(format!("rpcinfo: {e}")))?;
    if output.status.success() {
        Ok(None)
    } else {
        Ok(Some(format!(
            "rpcinfo: {server} {}",
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

/// `parse-persistent-nfs`: record the server and directory of a `persistent_nfs`
/// deployment (nothing to extract).
#[derive(Debug, Default)]
pub struct ParsePersistentNFS;

impl ParsePersistentNFS {
    /// Creates the `parse-persistent-nfs` action.
    pub fn new() -> Self {
        ParsePersistentNFS
    }

    /// The `(server, directory)` of `persistent_nfs.address`, or the error LAVA reports.
    /// `Ok(None)` when the block has no persistent NFS.
    pub fn address(device: &Device, params: &Mapping) -> Result<Option<(String, String)>, String> {
        let Some(persist) = params.truthy_value("persistent_nfs") else {
            return Ok(None);
        };
        let Some(address) = persist.get("address") else {
            return Err("Missing address for persistent NFS".into());
        };
        let address = scalar_string(address).unwrap_or_default();
        if !address.contains(':') {
            return Err(format!("Unrecognised NFS URL: '{address}'"));
        }
        let address = substitute_static_info(&address, device);
        match address.split_once(':') {
            Some((server, dir)) if !dir.contains(':') => {
                Ok(Some((server.to_string(), dir.to_string())))
            }
            _ => Err(format!("Unrecognised NFS URL: '{address}'")),
        }
    }
}

#[async_trait]
impl Action for ParsePersistentNFS {
    action_identity!(
        "parse-persistent-nfs",
        "ParsePersistentNFS",
        "parse persistent nfs",
        "parse persistent nfs"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        match Self::address(&ctx.job.device, &ctx.meta.parameters) {
            Ok(None) => Ok(()),
            Err(message) => {
                ctx.error(message);
                Ok(())
            }
            Ok(Some((server, _))) => {
                if let Some(message) = rpcinfo_nfs(&server)? {
                    ctx.error(message);
                }
                Ok(())
            }
        }
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        match Self::address(&ctx.job.device, &ctx.meta().parameters) {
            Ok(None) => Ok(()),
            Ok(Some((server, directory))) => {
                crate::runtime::tftp::parse_persistent_nfs(ctx, &server, &directory);
                Ok(())
            }
            Err(message) => Err(lava_pipeline::LavaError::job(message)),
        }
    }
}

/// `extract-overlay-ramdisk`: strip the U-Boot header and unpack the ramdisk so modules
/// and the overlay can be added.
#[derive(Debug, Default)]
pub struct ExtractRamdisk;

impl ExtractRamdisk {
    /// Creates the `extract-overlay-ramdisk` action.
    pub fn new() -> Self {
        ExtractRamdisk
    }
}

#[async_trait]
impl Action for ExtractRamdisk {
    action_identity!(
        "extract-overlay-ramdisk",
        "ExtractRamdisk",
        "extract ramdisk to a temporary directory",
        "extract the ramdisk"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        crate::runtime::tftp::extract_ramdisk(ctx).await
    }
}

/// `extract-modules`: unpack the kernel modules into the NFS root and/or the ramdisk.
#[derive(Debug, Default)]
pub struct ExtractModules;

impl ExtractModules {
    /// Creates the `extract-modules` action.
    pub fn new() -> Self {
        ExtractModules
    }
}

#[async_trait]
impl Action for ExtractModules {
    action_identity!(
        "extract-modules",
        "ExtractModules",
        "extract supplied kernel modules",
        "extract kernel modules"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        crate::runtime::tftp::extract_modules(ctx).await
    }
}

/// `apply-overlay-tftp`: unpack the LAVA overlay into the NFS root (preferred), the
/// persistent NFS or the ramdisk.
#[derive(Debug, Default)]
pub struct ApplyOverlayTftp;

impl ApplyOverlayTftp {
    /// Creates the `apply-overlay-tftp` action.
    pub fn new() -> Self {
        ApplyOverlayTftp
    }

    /// Validation: a `persistent_nfs` block needs an `address`; one message per problem into `errors`.
    pub fn check(params: &Mapping, errors: &mut Vec<String>) {
        let Some(persist) = params.truthy_value("persistent_nfs") else {
            return;
        };
        let has_address = match persist {
            Value::Mapping(m) => m.contains_key("address"),
            Value::String(s) => s.contains("address"),
            Value::Sequence(items) => items.iter().any(|i| i.as_str() == Some("address")),
            _ => false,
        };
        if !persist.is_mapping() {
            errors.push("Invalid persistent_nfs parameter.".into());
        }
        if !has_address {
            errors.push("Missing address for persistent NFS".into());
        }
    }
}

#[async_trait]
impl Action for ApplyOverlayTftp {
    action_identity!(
        "apply-overlay-tftp",
        "ApplyOverlayTftp",
        "unpack the overlay into the nfsrootfs or ramdisk",
        "apply lava overlay test files"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        Self::check(&ctx.meta.parameters, &mut errors);
        ctx.add_errors(errors);
        Ok(())
    }
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        crate::runtime::tftp::apply_overlay(ctx).await
    }
}

/// `prepare-kernel`: add the kernel conversion the boot method needs (U-Boot uImage or
/// a depthcharge FIT image).
#[derive(Debug, Default)]
pub struct PrepareKernelAction;

impl PrepareKernelAction {
    /// Creates the `prepare-kernel` action.
    pub fn new() -> Self {
        PrepareKernelAction
    }
}

#[async_trait]
impl Action for PrepareKernelAction {
    action_identity!(
        "prepare-kernel",
        "PrepareKernelAction",
        "populates the pipeline with a kernel conversion action",
        "add a kernel conversion"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let device = pipeline.device();
        if device.has_boot_method("u-boot") {
            pipeline.add(UBootPrepareKernelAction::new())?;
        } else if device.has_boot_method("depthcharge") {
            pipeline.add(PrepareFITAction::new())?;
        }
        Ok(())
    }
}

/// LAVA's `map_kernel_uboot`: the U-Boot boot command for a kernel type, given the load
/// addresses the device has (`bootm` is the fallback, with a conversion to uImage).
pub fn map_kernel_uboot(kernel_type: &str, device_params: Option<&Value>) -> &'static str {
    let has = |cmd: &str| device_params.and_then(|p| p.get(cmd)).is_some();
    match kernel_type {
        "zimage" if has("bootz") => "bootz",
        "image" if has("booti") => "booti",
        _ => "bootm",
    }
}

/// What `uboot-prepare-kernel` decided at validation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KernelConversion {
    /// The kernel type the bootloader needs (`kernel.type`, e.g. `uimage`).
    pub kernel_type: Option<String>,
    /// The boot command for that kernel type (`bootm`, `bootz` or `booti`).
    pub bootcommand: Option<String>,
    /// Wrap the kernel in a uImage (bootm of a non-uImage kernel).
    pub mkimage_conversion: bool,
}

/// `uboot-prepare-kernel`: convert the kernel to a uImage, or append the DTB, when the
/// device cannot boot the given kernel type directly.
#[derive(Debug, Default)]
pub struct UBootPrepareKernelAction;

impl UBootPrepareKernelAction {
    /// Creates the `uboot-prepare-kernel` action.
    pub fn new() -> Self {
        UBootPrepareKernelAction
    }

    /// LAVA's validation. `check_tool` looks `mkimage` up in `$PATH`.
    pub fn conversion(
        device: &Device,
        params: &Mapping,
        errors: &mut Vec<String>,
        check_tool: bool,
    ) -> LavaResult<KernelConversion> {
        let mut out = KernelConversion::default();
        let Some(deploy_params) = device.lookup(&["actions", "deploy", "parameters"]) else {
            return Ok(out);
        };
        let kernel_type = params
            .get("kernel")
            .and_then(|k| k.get("type"))
            .and_then(scalar_string)
            .filter(|t| !t.is_empty());
        let device_params = device.lookup(&["parameters"]);
        let Some(kernel_type) = kernel_type else {
            return Ok(out);
        };
        if device_params.is_none() {
            errors.push("Kernel boot type is not supported by this device.".into());
        }
        let bootcommand = map_kernel_uboot(&kernel_type, device_params);
        let kernel_type = kernel_type.to_lowercase();
        if device_params.and_then(|p| p.get(bootcommand)).is_none() {
            errors.push(format!(
                "Requested kernel boot type '{bootcommand}' is not supported by this device."
            ));
        }
        if ["bootm", "bootz", "booti"].contains(&kernel_type.as_str()) {
            errors.push(
                "booti, bootm and bootz are deprecated, please use 'image', 'uimage' or 'zimage'"
                    .into(),
            );
        }
        if check_tool {
            require_tool("mkimage")?;
        }
        if deploy_params.get("mkimage_arch").is_none() {
            errors.push(
                "Missing architecture for uboot mkimage support (mkimage_arch in u-boot parameters)"
                    .into(),
            );
        }
        out.mkimage_conversion = bootcommand == "bootm" && kernel_type != "uimage";
        out.bootcommand = Some(bootcommand.to_string());
        out.kernel_type = Some(kernel_type);
        Ok(out)
    }
}

#[async_trait]
impl Action for UBootPrepareKernelAction {
    action_identity!(
        "uboot-prepare-kernel",
        "UBootPrepareKernelAction",
        "convert kernel to uimage",
        "prepare/convert kernel"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        let outcome = Self::conversion(&ctx.job.device, &ctx.meta.parameters, &mut errors, true);
        ctx.add_errors(errors);
        outcome.map(|_| ())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let mut errors = Vec::new();
        let conversion =
            Self::conversion(&ctx.job.device, &ctx.meta().parameters, &mut errors, false)?;
        let (Some(_), Some(bootcommand)) = (conversion.kernel_type, conversion.bootcommand) else {
            return Ok(());
        };
        let device = &ctx.job.device;
        let deploy = device.lookup(&["actions", "deploy", "parameters"]);
        let flag = |k: &str| truthy(deploy.and_then(|p| p.get(k)));
        let load_address = device
            .lookup(&["parameters", "text_offset"])
            .or_else(|| device.lookup(&["parameters", bootcommand.as_str(), "kernel"]))
            .and_then(scalar_string);
        let plan = crate::runtime::tftp::KernelPreparation {
            mkimage_conversion: conversion.mkimage_conversion,
            mkimage_arch: deploy
                .and_then(|p| p.get("mkimage_arch"))
                .and_then(scalar_string)
                .unwrap_or_default(),
            append_dtb: flag("append_dtb"),
            use_xip: flag("use_xip"),
            load_address,
            bootcommand,
        };
        crate::runtime::tftp::prepare_kernel(ctx, &plan).await
    }
}

/// `prepare-fit`: package kernel, DTB and ramdisk into a FIT image for depthcharge.
#[derive(Debug, Default)]
pub struct PrepareFITAction;

impl PrepareFITAction {
    /// Creates the `prepare-fit` action.
    pub fn new() -> Self {
        PrepareFITAction
    }

    /// Validation: the device `parameters` and their `load_address`; one message per problem into `errors`.
    pub fn check(device: &Device, errors: &mut Vec<String>) {
        match device.lookup(&["parameters"]) {
            None | Some(Value::Null) => errors.push("Missing device parameters".into()),
            Some(p) if p.get("load_address").is_none() => {
                errors.push("Missing load_address from device parameters".into())
            }
            Some(_) => {}
        }
    }
}

#[async_trait]
impl Action for PrepareFITAction {
    action_identity!(
        "prepare-fit",
        "PrepareFITAction",
        "package kernel, dtb and ramdisk into an FIT image",
        "generate depthcharge FIT image"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        require_tool("mkimage")?;
        let mut errors = Vec::new();
        Self::check(&ctx.job.device, &mut errors);
        ctx.add_errors(errors);
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        crate::runtime::tftp::prepare_fit(ctx).await
    }
}

/// `configure-preseed-file`: add the installer command that copies the overlay to the
/// installed system (Debian preseed, CentOS kickstart).
#[derive(Debug, Default)]
pub struct ConfigurePreseedFile;

impl ConfigurePreseedFile {
    /// Creates the `configure-preseed-file` action.
    pub fn new() -> Self {
        ConfigurePreseedFile
    }
}

#[async_trait]
impl Action for ConfigurePreseedFile {
    action_identity!(
        "configure-preseed-file",
        "ConfigurePreseedFile",
        "add commands to automated installers, to copy the lava test overlay to the installed system",
        "add commands to installer config"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    /// Only the installers' late commands (Debian preseed, CentOS kickstart) are not
    /// written yet; every other deployment has nothing to configure.
    fn runnable(&self, meta: &ActionMeta) -> Runnable {
        let extra = meta
            .param("deployment_data")
            .and_then(|d| d.get("installer_extra_cmd"));
        let installer = matches!(
            meta.param("os").and_then(Value::as_str),
            Some("debian_installer" | "centos_installer")
        );
        if installer && truthy(extra) {
            Runnable::NotYet {
                missing: Some("installer late command"),
            }
        } else {
            Runnable::Yes
        }
    }
    async fn run(&mut self, _ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        Ok(())
    }
}

/// The ramdisk header `compress-ramdisk` adds, from the device deploy parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RamdiskHeader {
    /// `add_header: u-boot`: wrap with `mkimage -A <arch> -T ramdisk`.
    UBoot {
        /// The `mkimage -A` architecture (`mkimage_arch` of the device deploy parameters).
        mkimage_arch: String,
    },
    /// `add_header: raw`.
    Raw,
}

/// `compress-ramdisk`: rebuild the ramdisk with the overlay and modules in place.
#[derive(Debug, Default)]
pub struct CompressRamdisk;

impl CompressRamdisk {
    /// Creates the `compress-ramdisk` action.
    pub fn new() -> Self {
        CompressRamdisk
    }

    /// LAVA's validation: the header to add, if any. `check_tool` looks `mkimage` up.
    pub fn header(
        device: &Device,
        params: &Mapping,
        errors: &mut Vec<String>,
        check_tool: bool,
    ) -> LavaResult<Option<RamdiskHeader>> {
        if params.truthy_value("ramdisk").is_none() || ramdisk_untouched(params) {
            return Ok(None);
        }
        let Some(deploy_params) = device.lookup(&["actions", "deploy", "parameters"]) else {
            return Ok(None);
        };
        match deploy_params.get("add_header") {
            None | Some(Value::Null) => Ok(None),
            Some(h) if h.as_str() == Some("u-boot") => {
                if check_tool {
                    require_tool("mkimage")?;
                }
                match deploy_params.get("mkimage_arch").and_then(scalar_string) {
                    Some(arch) => Ok(Some(RamdiskHeader::UBoot { mkimage_arch: arch })),
                    None => {
                        errors.push(
                            "Missing architecture for uboot mkimage support (mkimage_arch in deploy parameters)"
                                .into(),
                        );
                        Ok(None)
                    }
                }
            }
            Some(h) if h.as_str() == Some("raw") => Ok(Some(RamdiskHeader::Raw)),
            Some(_) => {
                errors.push("ramdisk: add_header: unknown header type".into());
                Ok(None)
            }
        }
    }
}

#[async_trait]
impl Action for CompressRamdisk {
    action_identity!(
        "compress-ramdisk",
        "CompressRamdisk",
        "recreate a ramdisk with the overlay applied.",
        "compress ramdisk with overlay"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        let outcome = Self::header(&ctx.job.device, &ctx.meta.parameters, &mut errors, true);
        ctx.add_errors(errors);
        outcome.map(|_| ())
    }
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let mut errors = Vec::new();
        let header = Self::header(&ctx.job.device, &ctx.meta().parameters, &mut errors, false)?;
        let arch = match header {
            Some(RamdiskHeader::UBoot { mkimage_arch }) => Some(mkimage_arch),
            _ => None,
        };
        crate::runtime::tftp::compress_ramdisk(ctx, arch.as_deref()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(yaml: &str) -> Device {
        Device::from_yaml(yaml, None).unwrap()
    }

    fn mapping(yaml: &str) -> Mapping {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn kernel_boot_command_prefers_native_addresses() {
        let params: Value = serde_yaml::from_str("{bootz: {}, booti: {}}").unwrap();
        assert_eq!(map_kernel_uboot("zimage", Some(&params)), "bootz");
        assert_eq!(map_kernel_uboot("image", Some(&params)), "booti");
        assert_eq!(map_kernel_uboot("uimage", Some(&params)), "bootm");
        assert_eq!(map_kernel_uboot("zimage", None), "bootm");
        // LAVA compares before lowering the case.
        assert_eq!(map_kernel_uboot("zImage", Some(&params)), "bootm");
    }

    #[test]
    fn uboot_kernel_conversion_checks() {
        let d = device(
            "parameters: {bootm: {kernel: '0x1'}}\nactions:\n  deploy:\n    parameters: {}\n",
        );
        let mut errors = Vec::new();
        let c = UBootPrepareKernelAction::conversion(
            &d,
            &mapping("{kernel: {url: x, type: zimage}}"),
            &mut errors,
            false,
        )
        .unwrap();
        assert_eq!(c.bootcommand.as_deref(), Some("bootm"));
        assert!(c.mkimage_conversion);
        assert_eq!(
            errors,
            ["Missing architecture for uboot mkimage support (mkimage_arch in u-boot parameters)"]
        );

        errors.clear();
        let c = UBootPrepareKernelAction::conversion(
            &d,
            &mapping("{kernel: {url: x, type: bootz}}"),
            &mut errors,
            false,
        )
        .unwrap();
        assert_eq!(c.kernel_type.as_deref(), Some("bootz"));
        assert_eq!(errors.len(), 2);
        assert!(errors[0].contains("deprecated"));

        errors.clear();
        let bare = device("actions:\n  deploy:\n    parameters: {mkimage_arch: arm}\n");
        UBootPrepareKernelAction::conversion(
            &bare,
            &mapping("{kernel: {url: x, type: uimage}}"),
            &mut errors,
            false,
        )
        .unwrap();
        assert_eq!(
            errors,
            [
                "Kernel boot type is not supported by this device.",
                "Requested kernel boot type 'bootm' is not supported by this device."
            ]
        );

        // Without deploy parameters nothing is checked.
        errors.clear();
        let c = UBootPrepareKernelAction::conversion(
            &device("parameters: {}"),
            &mapping("{kernel: {url: x, type: bootz}}"),
            &mut errors,
            false,
        )
        .unwrap();
        assert!(errors.is_empty() && c.bootcommand.is_none());
    }

    #[test]
    fn ramdisk_header_rules() {
        let with = |header: &str| {
            device(&format!(
                "actions:\n  deploy:\n    parameters: {{add_header: {header}}}\n"
            ))
        };
        let ramdisk = mapping("{ramdisk: {url: x}}");
        let mut errors = Vec::new();
        assert_eq!(
            CompressRamdisk::header(&with("raw"), &ramdisk, &mut errors, false).unwrap(),
            Some(RamdiskHeader::Raw)
        );
        assert_eq!(
            CompressRamdisk::header(&with("u-boot"), &ramdisk, &mut errors, false).unwrap(),
            None
        );
        assert_eq!(errors.len(), 1);
        errors.clear();
        CompressRamdisk::header(&with("gzip"), &ramdisk, &mut errors, false).unwrap();
        assert_eq!(errors, ["ramdisk: add_header: unknown header type"]);
        // Untouched ramdisks and blocks without one skip the checks.
        errors.clear();
        let untouched =
            mapping("{ramdisk: {url: x, install_modules: false, install_overlay: false}}");
        CompressRamdisk::header(&with("gzip"), &untouched, &mut errors, false).unwrap();
        CompressRamdisk::header(&with("gzip"), &mapping("{kernel: {}}"), &mut errors, false)
            .unwrap();
        assert!(errors.is_empty());
    }

    #[test]
    fn nfs_prefix_and_persistent_address() {
        let mut errors = Vec::new();
        ExtractNfsRootfs::new().check(&mapping("{nfsrootfs: {url: x, prefix: /abs}}"), &mut errors);
        assert_eq!(
            errors,
            [
                "prefix must not be an absolute path",
                "prefix must be a directory and end with /"
            ]
        );

        let d = device("static_info: [{SERVER: 10.0.0.1}]");
        assert_eq!(
            ParsePersistentNFS::address(
                &d,
                &mapping("{persistent_nfs: {address: '{SERVER}:/srv/x'}}")
            ),
            Ok(Some(("10.0.0.1".into(), "/srv/x".into())))
        );
        assert_eq!(
            ParsePersistentNFS::address(&d, &mapping("{persistent_nfs: {address: nocolon}}")),
            Err("Unrecognised NFS URL: 'nocolon'".into())
        );
        assert_eq!(ParsePersistentNFS::address(&d, &mapping("{}")), Ok(None));

        errors.clear();
        ApplyOverlayTftp::check(
            &mapping("{persistent_nfs: {install_overlay: false}}"),
            &mut errors,
        );
        assert_eq!(errors, ["Missing address for persistent NFS"]);
    }

    #[test]
    fn fit_needs_load_address() {
        let mut errors = Vec::new();
        PrepareFITAction::check(&device("hostname: x"), &mut errors);
        PrepareFITAction::check(&device("parameters: {}"), &mut errors);
        PrepareFITAction::check(&device("parameters: {load_address: '0x1'}"), &mut errors);
        assert_eq!(
            errors,
            [
                "Missing device parameters",
                "Missing load_address from device parameters"
            ]
        );
    }
}
