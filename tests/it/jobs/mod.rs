//! Tests for strata-jobs: QEMU's tables and texts, the observed event
//! sequences, the rate limiter, the queries, and a seeded property test.

mod fake;
mod free;
mod io;
mod property;
mod queries;
mod ratelimit;
mod sequences;
mod tables;
