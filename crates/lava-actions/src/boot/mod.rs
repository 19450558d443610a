//! Boot strategies, one module per family.

pub mod avh;
pub mod barebox;
pub mod bootloader;
pub mod cmsis_dap;
pub mod depthcharge;
pub mod dfu;
pub mod docker;
pub mod fastboot;
pub mod fvp;
pub mod gdb;
pub mod grub;
pub mod ipxe;
pub mod iso;
pub mod jlink;
pub mod kexec;
pub mod minimal;
pub mod musca;
pub mod nodebooter;
pub mod openocd;
pub mod pyocd;
pub mod qdl;
pub mod qemu;
pub mod recovery;
pub mod secondary;
pub mod ssh;
pub mod uboot;
pub mod uefi;
pub mod uuu;

use lava_pipeline::StrategyRegistry;

/// Register every boot strategy.
pub fn register(registry: &mut StrategyRegistry) {
    qemu::register(registry);
    minimal::register(registry);
    ssh::register(registry);
    secondary::register(registry);
    uboot::register(registry);
    bootloader::register(registry);
    depthcharge::register(registry);
    barebox::register(registry);
    grub::register(registry);
    ipxe::register(registry);
    uefi::register(registry);
    kexec::register(registry);
    fastboot::register(registry);
    docker::register(registry);
    fvp::register(registry);
    avh::register(registry);
    uuu::register(registry);
    qdl::register(registry);
    cmsis_dap::register(registry);
    jlink::register(registry);
    openocd::register(registry);
    pyocd::register(registry);
    musca::register(registry);
    dfu::register(registry);
    gdb::register(registry);
    recovery::register(registry);
    nodebooter::register(registry);
    iso::register(registry);
}
