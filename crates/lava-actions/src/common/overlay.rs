//! Shared actions: `overlay`.
