//! Run-time: `qemu` (QEMU engineer).
