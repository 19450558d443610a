//! Run-time: `test_shell` (test-shell engineer).
