//! Shared actions of the tool-driven families: entering fastboot (over adb or from
//! U-Boot), detecting the fastboot serial number, and the udev waits for USB devices
//! (board ID, USB serial, DFU, QDL, mass storage, device path).
//!
//! Besides the fastboot deploy and boot, these are used by the `download` deploy
//! (`enter-fastboot-action`, `uboot-enter-fastboot`) and the MCU boot methods (the waits).

use crate::common::bootloader::BootloaderInterruptAction;
use crate::common::power::ResetDevice;
use lava_pipeline::value::truthy;
use lava_pipeline::{
    Action, ActionMeta, Device, ErrorKind, Job, LavaResult, PipelineBuilder, Runnable,
    ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};
use std::collections::HashSet;
use std::sync::Mutex;

/// The placeholder serial number device-type templates use when none is configured.
pub const UNSET_SERIAL: &str = "0000000000";

/// Whether the device has a `commands.hard_reset` (LAVA's `device.hard_reset_command`).
pub fn has_hard_reset(device: &Device) -> bool {
    device.has_command("hard_reset")
}

/// A top-level device key as a string (numbers are shown as YAML scalars).
fn device_string(device: &Device, key: &str) -> Option<String> {
    device
        .lookup(&[key])
        .and_then(lava_pipeline::value::scalar_string)
}

/// Whether the device detects its fastboot serial number at run time.
pub fn fastboot_auto_detection(device: &Device) -> bool {
    truthy(device.lookup(&["fastboot_auto_detection"]))
}

/// The fastboot serial number check shared by the fastboot actions.
fn check_fastboot_serial(device: &Device, ctx: &mut ValidateContext<'_>) {
    match device.lookup(&["fastboot_serial_number"]) {
        None => ctx.error("device fastboot serial number missing"),
        Some(v) if lava_pipeline::value::scalar_string(v).as_deref() == Some(UNSET_SERIAL) => {
            ctx.error("device fastboot serial number unset")
        }
        Some(_) => {}
    }
}

/// The serial number check, skipped when the device detects it (`fastboot_auto_detection`).
pub fn check_fastboot_serial_unless_detected(device: &Device, ctx: &mut ValidateContext<'_>) {
    if !fastboot_auto_detection(device) {
        check_fastboot_serial(device, ctx);
    }
}

/// `fastboot_options` must be present and a list.
pub fn check_fastboot_options(device: &Device, ctx: &mut ValidateContext<'_>) {
    match device.lookup(&["fastboot_options"]) {
        None => ctx.error("device fastboot options missing"),
        Some(Value::Sequence(_)) => {}
        Some(_) => ctx.error("device fastboot options is not a list"),
    }
}

/// The deploy block must list a `fastboot` connection.
pub fn check_fastboot_connection(device: &Device, ctx: &mut ValidateContext<'_>) {
    let listed = match device.lookup(&["actions", "deploy", "connections"]) {
        Some(Value::Mapping(m)) => m.contains_key("fastboot"),
        Some(Value::Sequence(s)) => s.iter().any(|v| v.as_str() == Some("fastboot")),
        _ => false,
    };
    if !listed {
        ctx.error("Device not configured to support fastboot deployment connections.");
    }
}

/// What a fastboot command line needs: `fastboot -s <serial> <cmd...> <options...>`,
/// run in the job's docker container when the block has `docker`.
#[derive(Debug, Clone, Default)]
pub struct FastbootTool {
    /// The device's fastboot serial number (`fastboot -s`).
    pub serial_number: Option<String>,
    /// The device's `fastboot_options`, appended to each command.
    pub options: Vec<String>,
    /// The `docker` parameters of the block, when the tool runs in a container.
    pub docker: Option<Value>,
}

impl FastbootTool {
    /// Read the device settings and the block's `docker` parameters.
    pub fn from_builder(pipeline: &PipelineBuilder<'_>) -> Self {
        let device = pipeline.device();
        FastbootTool {
            serial_number: device_string(device, "fastboot_serial_number"),
            options: device
                .lookup(&["fastboot_options"])
                .and_then(Value::as_sequence)
                .map(|s| {
                    s.iter()
                        .filter_map(lava_pipeline::value::scalar_string)
                        .collect()
                })
                .unwrap_or_default(),
            docker: pipeline.param("docker").cloned(),
        }
    }

    /// The command line for a fastboot sub-command.
    pub fn command(&self, args: &[&str]) -> Vec<String> {
        let mut cmd = vec!["fastboot".to_string(), "-s".to_string()];
        cmd.push(self.serial_number.clone().unwrap_or_default());
        cmd.extend(args.iter().map(|a| a.to_string()));
        cmd.extend(self.options.iter().cloned());
        cmd
    }
}

/// LAVA's optional-container check: a `docker` block needs an image name.
pub fn check_optional_container(params: &Mapping, ctx: &mut ValidateContext<'_>) {
    if let Some(docker) = params.get("docker") {
        let image = docker.get("image").and_then(Value::as_str);
        if image.is_none_or(str::is_empty) {
            ctx.error("docker: 'image' is required");
        }
    }
}

/// Jobs and namespaces in which `detect-fastboot-device` was already added (LAVA keeps this
/// flag in the namespace data while building).
static DETECT_ADDED: Mutex<Option<HashSet<(usize, String, String)>>> = Mutex::new(None);

/// Add `detect-fastboot-device` when the device detects its serial number at run time and
/// the action was not added yet in this namespace (LAVA's `DetectFastbootDevice.add_if_needed`).
pub fn add_detect_fastboot_if_needed(pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
    let device = pipeline.device();
    let unset = device_string(device, "fastboot_serial_number").as_deref() == Some(UNSET_SERIAL);
    if !(unset && fastboot_auto_detection(device)) {
        return Ok(());
    }
    let job: &Job = pipeline.job();
    let namespace = pipeline
        .param("namespace")
        .and_then(Value::as_str)
        .unwrap_or("common")
        .to_string();
    let key = (job as *const Job as usize, job.id.clone(), namespace);
    let first = {
        let mut guard = DETECT_ADDED.lock().unwrap_or_else(|e| e.into_inner());
        guard.get_or_insert_with(HashSet::new).insert(key)
    };
    if first {
        pipeline.add(DetectFastbootDevice::new(FastbootTool::from_builder(
            pipeline,
        )))?;
    }
    Ok(())
}

/// `detect-fastboot-device`: find the only device in fastboot mode and use its serial.
#[derive(Debug, Default)]
pub struct DetectFastbootDevice {
    /// How `fastboot` is called (serial number, options, docker).
    pub tool: FastbootTool,
}

impl DetectFastbootDevice {
    /// The action calling fastboot through `tool`.
    pub fn new(tool: FastbootTool) -> Self {
        DetectFastbootDevice { tool }
    }
}

#[async_trait]
impl Action for DetectFastbootDevice {
    action_identity!(
        "detect-fastboot-device",
        "DetectFastbootDevice",
        "Detect fastboot device serial number.",
        "Set fastboot SN if only one device found."
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        check_optional_container(&ctx.meta.parameters, ctx);
        if self.tool.docker.is_none() {
            crate::common::power::require_tool("fastboot")?;
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// `enter-fastboot-action`: reboot into the bootloader over adb, or from fastboot.
#[derive(Debug, Default)]
pub struct EnterFastbootAction {
    /// How `fastboot` is called (serial number, options, docker).
    pub tool: FastbootTool,
    /// The device's adb serial number (`adb -s`).
    pub adb_serial_number: Option<String>,
}

impl EnterFastbootAction {
    /// Creates the `enter-fastboot-action` action.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Action for EnterFastbootAction {
    action_identity!(
        "enter-fastboot-action",
        "EnterFastbootAction",
        "enter fastboot bootloader",
        "enter fastboot"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.tool = FastbootTool::from_builder(pipeline);
        self.adb_serial_number = device_string(pipeline.device(), "adb_serial_number");
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        check_optional_container(&ctx.meta.parameters, ctx);
        let device = &ctx.job.device;
        match device.lookup(&["adb_serial_number"]) {
            None => ctx.error("device adb serial number missing"),
            Some(v) if lava_pipeline::value::scalar_string(v).as_deref() == Some(UNSET_SERIAL) => {
                ctx.error("device adb serial number unset")
            }
            Some(_) => {}
        }
        check_fastboot_serial(device, ctx);
        check_fastboot_options(device, ctx);
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// `uboot-enter-fastboot`: reset, interrupt U-Boot and send its fastboot commands.
#[derive(Debug, Default)]
pub struct UBootEnterFastbootAction {
    /// `actions.deploy.methods.u-boot.parameters.bootloader_prompt`.
    pub bootloader_prompt: Option<String>,
    /// `actions.deploy.methods.u-boot.parameters.fastboot.commands`.
    pub commands: Vec<String>,
}

impl UBootEnterFastbootAction {
    /// Creates the `uboot-enter-fastboot` action.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Action for UBootEnterFastbootAction {
    action_identity!(
        "uboot-enter-fastboot",
        "UBootEnterFastbootAction",
        "interactive uboot enter fastboot action",
        "uboot commands to enter fastboot mode"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let params = pipeline.device().deploy_method_params("u-boot");
        self.bootloader_prompt = params
            .and_then(|p| p.get("bootloader_prompt"))
            .and_then(Value::as_str)
            .map(str::to_string);
        self.commands =
            crate::common::command_list(params.and_then(|p| p.get("fastboot")?.get("commands")));
        pipeline.add(ResetDevice::new())?;
        pipeline.add(BootloaderInterruptAction::new())?;
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let device = &ctx.job.device;
        if !device.has_deploy_method("u-boot") {
            ctx.error("uboot method missing");
        }
        let commands = device
            .deploy_method_params("u-boot")
            .and_then(|v| v.get("fastboot"))
            .and_then(|v| v.get("commands"));
        if commands.is_none() {
            ctx.error("uboot command missing");
        }
        Ok(())
    }
}

/// `connect-adb`: an adb shell connection to the device.
#[derive(Debug, Default)]
pub struct ConnectAdb {
    /// The device's adb serial number (`adb -s`).
    pub adb_serial_number: Option<String>,
}

#[async_trait]
impl Action for ConnectAdb {
    action_identity!(
        "connect-adb",
        "ConnectAdb",
        "connect via adb shell to the device",
        "run connection command"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.adb_serial_number = device_string(pipeline.device(), "adb_serial_number");
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let device = &ctx.job.device;
        if !device.has_boot_method("adb") {
            return Ok(());
        }
        if !device.has("adb_serial_number") {
            ctx.error("device adb serial number missing");
        }
        let listed = device.actions.boot.connections.contains_key("adb");
        if !listed {
            ctx.error("Device not configured to support adb connection.");
        }
        crate::common::power::require_tool("adb")?;
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// `adb-overlay-unpack`: push the test overlay with adb.
#[derive(Debug, Default)]
pub struct AdbOverlayUnpack {
    /// The device's adb serial number (`adb -s`).
    pub adb_serial_number: Option<String>,
}

#[async_trait]
impl Action for AdbOverlayUnpack {
    action_identity!(
        "adb-overlay-unpack",
        "AdbOverlayUnpack",
        "unpack the overlay over adb",
        "unpack the overlay on the remote device"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.adb_serial_number = device_string(pipeline.device(), "adb_serial_number");
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        // LAVA only reports a missing serial number (its "unset" check is unreachable).
        if !ctx.job.device.has("adb_serial_number") {
            ctx.error("device adb serial number missing");
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// The udev properties a wait matches, as `(property, value)` pairs.
pub type UdevMatch = Vec<(String, String)>;

/// `wait-device-boardid`: wait for a udev device with this serial (`ID_SERIAL_SHORT`).
#[derive(Debug, Default)]
pub struct WaitDeviceBoardID {
    /// The board ID given by the caller, else the device's `board_id`.
    pub board_id: Option<Value>,
    explicit: bool,
}

impl WaitDeviceBoardID {
    /// Wait for the device's `board_id`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wait for this board ID (LAVA falls back to `board_id` when it is empty).
    pub fn with_board_id(board_id: Option<Value>) -> Self {
        let usable = board_id.as_ref().is_some_and(|v| truthy(Some(v)));
        WaitDeviceBoardID {
            board_id: if usable { board_id } else { None },
            explicit: usable,
        }
    }

    /// The udev match of the wait.
    pub fn udev_match(&self) -> UdevMatch {
        let id = self
            .board_id
            .as_ref()
            .and_then(lava_pipeline::value::scalar_string)
            .unwrap_or_else(|| "None".into());
        vec![("ID_SERIAL_SHORT".into(), id)]
    }
}

#[async_trait]
impl Action for WaitDeviceBoardID {
    action_identity!(
        "wait-device-boardid",
        "WaitDeviceBoardID",
        "wait for udev device with board ID",
        "wait for udev device with board ID"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        if !self.explicit {
            self.board_id = pipeline.device().lookup(&["board_id"]).cloned();
        }
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if !matches!(self.board_id, Some(Value::String(_))) {
            ctx.error("invalid board_id");
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// The `board_id`, `usb_vendor_id` and `usb_product_id` of a device, as LAVA reads them
/// (missing values are empty strings).
fn usb_ids(device: &Device) -> (String, String, String) {
    let get = |k: &str| device_string(device, k).unwrap_or_default();
    (get("board_id"), get("usb_vendor_id"), get("usb_product_id"))
}

/// LAVA's validation of a udev wait: `[<tag>] board_id unset` when the board id is the
/// placeholder `unset_board`, and the vendor/product ids must not be `0000`.
fn check_usb_ids(ctx: &mut ValidateContext<'_>, tag: &str, unset_board: &str) {
    let (board, vendor, product) = usb_ids(&ctx.job.device);
    if board == unset_board {
        ctx.error(format!("[{tag}] board_id unset"));
    }
    if vendor == "0000" {
        ctx.error("usb_vendor_id unset");
    }
    if product == "0000" {
        ctx.error("usb_product_id unset");
    }
}

/// `wait-usb-serial`: wait for the board's USB serial (tty) device.
#[derive(Debug, Default)]
pub struct WaitUSBSerialDeviceAction {
    /// The udev properties that identify the board's serial device.
    pub serial_device: UdevMatch,
    /// Seconds to sleep once the device appeared.
    pub usb_sleep: u64,
}

impl WaitUSBSerialDeviceAction {
    /// Creates the `wait-usb-serial` action.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Action for WaitUSBSerialDeviceAction {
    action_identity!(
        "wait-usb-serial",
        "WaitUSBSerialDeviceAction",
        "wait for USB serial device",
        "wait for USB serial device"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let device = pipeline.device();
        let (board, vendor, product) = usb_ids(device);
        let driver = device_string(device, "usb_serial_driver").unwrap_or_else(|| "cdc_acm".into());
        self.serial_device = vec![
            ("ID_SERIAL_SHORT".into(), board),
            ("ID_VENDOR_ID".into(), vendor),
            ("ID_MODEL_ID".into(), product),
            ("ID_USB_DRIVER".into(), driver),
        ];
        self.usb_sleep = device
            .lookup(&["usb_sleep"])
            .and_then(Value::as_u64)
            .unwrap_or(0);
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        check_usb_ids(ctx, "USBSERIAL", UNSET_SERIAL);
        match ctx.job.device.lookup(&["usb_sleep"]) {
            None => {}
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {}
            Some(_) => ctx.error("usb_sleep should be an integer"),
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// `wait-dfu-device`: wait for the board in DFU mode.
#[derive(Debug, Default)]
pub struct WaitDFUDeviceAction {
    /// The udev properties that identify the board in DFU mode.
    pub dfu_device: UdevMatch,
}

#[async_trait]
impl Action for WaitDFUDeviceAction {
    action_identity!(
        "wait-dfu-device",
        "WaitDFUDeviceAction",
        "wait for DFU device",
        "wait for DFU device"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let (board, vendor, product) = usb_ids(pipeline.device());
        self.dfu_device = vec![
            ("ID_SERIAL_SHORT".into(), board),
            ("ID_VENDOR_ID".into(), vendor),
            ("ID_MODEL_ID".into(), product),
        ];
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        check_usb_ids(ctx, "DFU", UNSET_SERIAL);
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// The board ID Qualcomm boards report in EDL mode when none is configured.
pub const UNSET_QDL_BOARD_ID: &str = "QUSB_BULK_CID:0420_SN:00000000";

/// `wait-qdl-device`: wait for the board in Qualcomm EDL mode.
#[derive(Debug, Default)]
pub struct WaitQDLDeviceAction {
    /// The udev properties that identify the board in EDL mode.
    pub qdl_device: UdevMatch,
}

#[async_trait]
impl Action for WaitQDLDeviceAction {
    action_identity!(
        "wait-qdl-device",
        "WaitQDLDeviceAction",
        "wait for QDL device",
        "wait for QDL device"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let (board, vendor, product) = usb_ids(pipeline.device());
        self.qdl_device = vec![
            ("ID_VENDOR_ID".into(), vendor),
            ("ID_MODEL_ID".into(), product),
            ("ID_PRODUCT".into(), board),
        ];
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        check_usb_ids(ctx, "QDL", UNSET_QDL_BOARD_ID);
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// `wait-usb-mass-storage-device`: wait for the partition labelled `usb_filesystem_label`.
#[derive(Debug, Default)]
pub struct WaitUSBMassStorageDeviceAction {
    /// The label of the partition to wait for (`usb_filesystem_label`).
    pub fs_label: Option<String>,
}

impl WaitUSBMassStorageDeviceAction {
    /// Creates the `wait-usb-mass-storage-device` action.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Action for WaitUSBMassStorageDeviceAction {
    action_identity!(
        "wait-usb-mass-storage-device",
        "WaitUSBMassStorageDeviceAction",
        "wait for USB mass storage device",
        "wait for USB mass storage device"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.fs_label = pipeline
            .device()
            .lookup_str(&["usb_filesystem_label"])
            .map(str::to_string);
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if self.fs_label.is_none() {
            ctx.error("usb_fs_label unset");
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// `wait-device-path`: wait for a udev device path (e.g. `/dev/disk/by-id/...`).
#[derive(Debug, Default)]
pub struct WaitDevicePathAction {
    /// The device path to wait for, as given (validation requires a string).
    pub path: Option<Value>,
}

impl WaitDevicePathAction {
    /// Waits for the device path `path` (validation requires a string).
    pub fn new(path: Option<Value>) -> Self {
        WaitDevicePathAction { path }
    }
}

#[async_trait]
impl Action for WaitDevicePathAction {
    action_identity!(
        "wait-device-path",
        "WaitDevicePathAction",
        "wait for udev device path",
        "wait for udev device path"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if !matches!(self.path, Some(Value::String(_))) {
            ctx.error("invalid device path");
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// Whether a test block in this block's namespace needs an overlay.
pub fn test_needs_overlay(pipeline: &PipelineBuilder<'_>) -> bool {
    pipeline.job().test_needs_overlay(pipeline.namespace())
}

/// Whether a test block in this block's namespace needs deployment data.
pub fn test_needs_deployment(pipeline: &PipelineBuilder<'_>) -> bool {
    pipeline
        .job()
        .test_needs_deployment_data(pipeline.namespace())
}

/// Whether a test block in this block's namespace expects a shell.
pub fn test_has_shell(pipeline: &PipelineBuilder<'_>) -> bool {
    pipeline.job().test_has_shell(pipeline.namespace())
}
