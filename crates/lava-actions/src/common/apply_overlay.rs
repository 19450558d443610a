//! Putting the overlay into images: a qcow2 guest drive (`apply-overlay-guest`), a
//! filesystem image (`apply-overlay-image`), an Android sparse image
//! (`apply-overlay-sparse-image`) and extra `overlays` appended to an image
//! (`append-overlays`).

use lava_pipeline::BlockLookups;
use lava_pipeline::{
    Action, ActionMeta, ErrorKind, LavaError, LavaResult, Pipeline, RunContext, Runnable,
    ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// The guest drive file name.
pub const GUEST_FILENAME: &str = "lava-guest.qcow2";

/// `apply-overlay-guest`: a qcow2 drive holding the overlay (size from the device's
/// `actions.deploy.methods.image.parameters.guest`).
#[derive(Debug, Default)]
pub struct ApplyOverlayGuest;

impl ApplyOverlayGuest {
    /// Creates the `apply-overlay-guest` action.
    pub fn new() -> Self {
        ApplyOverlayGuest
    }
}

#[async_trait]
impl Action for ApplyOverlayGuest {
    action_identity!(
        "apply-overlay-guest",
        "ApplyOverlayGuest",
        "prepare a qcow2 drive containing the overlay",
        "build a guest filesystem with the overlay"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let guest = ctx
            .job
            .device
            .deploy_method_params("image")
            .and_then(|v| v.get("guest"));
        if guest.is_none() {
            ctx.error("Device configuration does not specify size of guest filesystem.");
        }
        Ok(())
    }
    /// Skipped when `append-overlays` put the test overlay into an image (LAVA's
    /// `append-overlays/guest/applied`); otherwise the overlay disk is built
    /// ([`crate::runtime::image_overlay::build_guest_disk`]).
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        if crate::runtime::image_overlay::overlay_applied(ctx) {
            ctx.logger.debug("Overlay already applied");
            return Ok(());
        }
        crate::runtime::image_overlay::build_guest_disk(ctx, GUEST_FILENAME)
            .await
            .map(|_| ())
    }
}

/// `apply-overlay-image`: copy the overlay into a filesystem image (its root partition).
#[derive(Debug)]
pub struct ApplyOverlayImage {
    /// The image key in the block parameters.
    pub image_key: String,
    /// Whether the image is partitioned (`root_partition` required).
    pub use_root_partition: bool,
}

impl ApplyOverlayImage {
    /// Applies the overlay to the image `image_key`, into its root partition when `use_root_partition`.
    pub fn new(image_key: &str, use_root_partition: bool) -> Self {
        ApplyOverlayImage {
            image_key: image_key.to_string(),
            use_root_partition,
        }
    }
}

impl Default for ApplyOverlayImage {
    fn default() -> Self {
        ApplyOverlayImage::new("image", true)
    }
}

#[async_trait]
impl Action for ApplyOverlayImage {
    action_identity!(
        "apply-overlay-image",
        "ApplyOverlayImage",
        "apply overlay via guestfs to the test image",
        "apply overlay to test image"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    /// LAVA's `root_partition` lookup (the block's `images.<key>` or `<key>`), then the
    /// overlay written into that partition of the image, or into the whole image when the
    /// image is a filesystem (see [`crate::runtime::image_overlay::apply_overlay_to_image`]).
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let root_partition = if self.use_root_partition {
            let params = ctx.meta().params();
            let block = match (params.get(&self.image_key), params.get("images")) {
                (None, Some(images)) => images.get(&self.image_key).ok_or_else(|| {
                    LavaError::job(format!(
                        "Unable to find image configuration for '{}'",
                        self.image_key
                    ))
                })?,
                (Some(block), _) => block,
                (None, None) => &Value::Null,
            };
            let partition = block.get("root_partition").ok_or_else(|| {
                LavaError::job("Unable to apply the overlay image without 'root_partition'")
            })?;
            let index = partition
                .as_u64()
                .or_else(|| lava_pipeline::value::scalar_string(partition)?.parse().ok())
                .ok_or_else(|| {
                    LavaError::job(format!(
                        "Invalid 'root_partition' for '{}': {}",
                        self.image_key,
                        lava_pipeline::value::python_repr(partition)
                    ))
                })?;
            Some(index as usize)
        } else {
            None
        };
        crate::runtime::image_overlay::apply_overlay_to_image(ctx, &self.image_key, root_partition)
            .await
    }
}

/// `apply-overlay-sparse-image`: unsparse, copy the overlay in, sparse again.
#[derive(Debug)]
pub struct ApplyOverlaySparseImage {
    /// The deploy image key whose sparse image gets the overlay.
    pub image_key: String,
}

impl ApplyOverlaySparseImage {
    /// Applies the overlay to the sparse image `image_key`.
    pub fn new(image_key: &str) -> Self {
        ApplyOverlaySparseImage {
            image_key: image_key.to_string(),
        }
    }
}

#[async_trait]
impl Action for ApplyOverlaySparseImage {
    action_identity!(
        "apply-overlay-sparse-image",
        "ApplyOverlaySparseImage",
        "apply overlay to sparse image",
        "apply overlay to sparse image"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, _ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        for tool in ["simg2img", "mount", "umount", "img2simg"] {
            super::power::require_tool(tool)?;
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// Image formats `append-overlays` can modify.
pub const IMAGE_FORMATS: [&str; 3] = ["cpio.newc", "ext4", "tar"];
/// Formats of the appended overlays.
pub const OVERLAY_FORMATS: [&str; 2] = ["file", "tar"];

/// `append-overlays`: put each `overlays.<name>` file or tarball at its `path` in the
/// image.
#[derive(Debug)]
pub struct AppendOverlays {
    /// The deploy image key (e.g. `rootfs`) whose image gets the overlays.
    pub key: String,
    /// That image's block: its `overlays` and `format`.
    pub params: Mapping,
}

impl AppendOverlays {
    /// Appends the block `params`' overlays to the image `key`.
    pub fn new(key: &str, params: Mapping) -> Self {
        AppendOverlays {
            key: key.to_string(),
            params,
        }
    }

    /// LAVA's checks, each a JobError.
    pub fn check(&self) -> LavaResult<()> {
        let overlays = self
            .params
            .get("overlays")
            .ok_or_else(|| LavaError::job("Missing 'overlays' dictionary"))?
            .as_mapping()
            .ok_or_else(|| LavaError::job("'overlays' is not a dictionary"))?;
        for (name, overlay) in overlays {
            let name = lava_pipeline::value::scalar_string(name).unwrap_or_default();
            if name == "lava" {
                continue;
            }
            let format = overlay.get("format").and_then(Value::as_str);
            if !format.is_some_and(|f| OVERLAY_FORMATS.contains(&f)) {
                return Err(LavaError::job(format!(
                    "Invalid 'format' ({}) for 'overlays.{name}'",
                    lava_python::str_repr(format.unwrap_or(""))
                )));
            }
            let path = overlay
                .get("path")
                .ok_or_else(|| LavaError::job(format!("Missing 'path' for 'overlays.{name}'")))?;
            let text = path.as_str().unwrap_or_default();
            if !text.starts_with('/') || text.contains("..") {
                return Err(LavaError::job(format!(
                    "Invalid 'path': {}",
                    lava_pipeline::value::python_repr(path)
                )));
            }
        }
        let format = self.params.get("format").and_then(Value::as_str);
        if !format.is_some_and(|f| IMAGE_FORMATS.contains(&f)) {
            return Err(LavaError::job(format!(
                "Unsupported image format {}",
                lava_pipeline::value::python_repr(
                    self.params.get("format").unwrap_or(&Value::Null)
                )
            )));
        }
        if self.params.flag("sparse") && format != Some("ext4") {
            return Err(LavaError::job(
                "sparse=True is only available for ext4 images",
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Action for AppendOverlays {
    action_identity!(
        "append-overlays",
        "AppendOverlays",
        "append overlays to an image",
        "append overlays to an image"
    );
    fn validate(&self, _ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        self.check()
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        crate::runtime::image_overlay::append_overlays(ctx, &self.key, &self.params).await
    }
}

/// `apply-overlay-avh`: the overlay into the root partition of the AVH storage file
/// inside the firmware package.
#[derive(Debug, Default)]
pub struct ApplyOverlayAvh;

impl ApplyOverlayAvh {
    /// Creates the `apply-overlay-avh` action.
    pub fn new() -> Self {
        ApplyOverlayAvh
    }
}

#[async_trait]
impl Action for ApplyOverlayAvh {
    action_identity!(
        "apply-overlay-avh",
        "ApplyOverlayAvh",
        "apply overlay via guestfs to avh storage file",
        "apply overlay to avh storage file"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let package = ctx.meta.parameters.get("fw_package");
        if package.and_then(|p| p.get("storage_file")).is_none() {
            return Err(LavaError::job(
                "Unable to apply overlay without 'fw_package.storage_file'",
            ));
        }
        if package.and_then(|p| p.get("root_partition")).is_none() {
            return Err(LavaError::job(
                "Unable to apply overlay without 'fw_package.root_partition'",
            ));
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// `apply-overlay-qdl`: the overlay into the root filesystem image of a qcomflash
/// tarball.
#[derive(Debug)]
pub struct ApplyQDLOverlay {
    /// The image inside the tarball (`rootfs.img` by default).
    pub rootfs_image: String,
}

impl ApplyQDLOverlay {
    /// Applies the overlay to the QDL rootfs image `rootfs_image`.
    pub fn new(rootfs_image: &str) -> Self {
        ApplyQDLOverlay {
            rootfs_image: rootfs_image.to_string(),
        }
    }
}

#[async_trait]
impl Action for ApplyQDLOverlay {
    action_identity!(
        "apply-overlay-qdl",
        "ApplyQDLOverlay",
        "apply overlay to image in qcomflash tarball",
        "apply overlay to image in qcomflash tarball"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if self.rootfs_image.is_empty() {
            ctx.error("rootfs_image is empty or missing");
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}
