//! Shared actions: `power`.
