//! `strata-qsd`: Strata's qemu-storage-daemon replacement (QMP daemon and NBD block exports).
#![deny(missing_docs)]

pub mod args;
pub mod chardev;
pub mod daemon;
pub mod exports;
pub mod nbd;
pub mod sys;
