//! Strata's one integration-test binary.
//!
//! One module per area; each module is data-driven where it can be (a table of
//! cases and one `check` helper), so that a new QEMU behaviour is a new row.

mod architecture;
mod block;
mod filters;
mod formats;
mod fuzz_inputs;
mod graph;
mod jobs;
mod nbd;
mod perm;
mod qmp;
mod qsd;
mod sim;
mod stream;
mod system;
