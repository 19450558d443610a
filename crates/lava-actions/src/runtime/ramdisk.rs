//! Run-time: `ramdisk` (QEMU engineer).
