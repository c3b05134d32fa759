//! Holder package for the workspace's single integration-test binary, `tests/it`.
//!
//! The package has no library code of its own: everything lives in `it/`.
