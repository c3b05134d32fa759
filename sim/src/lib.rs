//! The deterministic scheduler simulator.
//!
//! Not yet implemented: it lands with the simulator issue, on top of the block
//! layer. README.md's status table says what works today.
