//! Shared actions: `testdef`.
