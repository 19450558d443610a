//! Deploy strategies, one module per family.

pub mod avh;
pub mod docker;
pub mod download;
pub mod downloads;
pub mod fastboot;
pub mod flasher;
pub mod fvp;
pub mod iso;
pub mod mps;
pub mod musca;
pub mod nbd;
pub mod nfs;
pub mod overlay;
pub mod qdl;
pub mod qemu_nfs;
pub mod recovery;
pub mod removable;
pub mod ssh;
pub mod tftp;
pub mod tmpfs;
pub mod uboot_ums;
pub mod usbg_ms;
pub mod uuu;
pub mod vemsd;

use lava_pipeline::StrategyRegistry;

/// Register every deploy strategy.
pub fn register(registry: &mut StrategyRegistry) {
    tmpfs::register(registry);
    overlay::register(registry);
    download::register(registry);
    downloads::register(registry);
    ssh::register(registry);
    nfs::register(registry);
    qemu_nfs::register(registry);
    tftp::register(registry);
    removable::register(registry);
    nbd::register(registry);
    iso::register(registry);
    fastboot::register(registry);
    docker::register(registry);
    fvp::register(registry);
    avh::register(registry);
    uuu::register(registry);
    qdl::register(registry);
    mps::register(registry);
    musca::register(registry);
    vemsd::register(registry);
    flasher::register(registry);
    recovery::register(registry);
    uboot_ums::register(registry);
    usbg_ms::register(registry);
}
