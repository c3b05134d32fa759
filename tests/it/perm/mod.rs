//! Perm tests (being written).
