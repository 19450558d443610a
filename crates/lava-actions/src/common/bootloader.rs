//! Shared actions: `bootloader`.
