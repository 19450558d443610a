//! Shared actions: `apply_overlay`.
