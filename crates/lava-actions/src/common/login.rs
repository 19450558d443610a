//! Shared actions: `login`.
