//! Graph tests (being written).
