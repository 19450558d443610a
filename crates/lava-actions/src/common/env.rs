//! Shared actions: `env`.
