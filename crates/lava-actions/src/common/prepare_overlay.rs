//! Shared actions: `prepare_overlay`.
