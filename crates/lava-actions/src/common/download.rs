//! Shared actions: `download`.
