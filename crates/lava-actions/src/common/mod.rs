//! Actions shared by several strategy families (overlay, test definitions, downloads,
//! login, shell expectations, environment export, power, finalize, user commands).

pub mod apply_overlay;
pub mod bootloader;
pub mod command;
pub mod download;
pub mod env;
pub mod fastboot;
pub mod finalize;
pub mod login;
pub mod overlay;
pub mod power;
pub mod prepare_overlay;
pub mod testdef;
