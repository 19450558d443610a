//! Shared actions: `fastboot`.
