//! Seeded, replayable fuzzing of the three inputs a storage daemon takes
//! from people it does not trust: QMP bytes ([`qmp`]), qcow2 images
//! ([`qcow2`]) and NBD requests ([`nbd`]).
//!
//! Input `i` of seed `S` for a target is made by [`case_gen`] from
//! `(target, S, i)` alone, so any input of any run is replayed by its
//! index. Each module has a generator and an in-process check of the
//! properties that hold without a process around it (no panic, bounded
//! time, a refused image never written, replies well formed, the monitor
//! still answers); `cargo xtask fuzz-inputs` sends the same inputs to a
//! real strata-qsd and adds what needs a process (no abort, bounded
//! memory, the daemon still answers on its sockets). See
//! `docs/FUZZ-INPUTS.md`.
//!
//! ```
//! use strata_fuzz_inputs::{case_gen, qcow2, Target};
//!
//! let images = qcow2::pristine_images();
//! let mut g = case_gen(Target::Qcow2, 7, 0);
//! let mutated = qcow2::mutate(&mut g, &images[0].bytes);
//! // The same index of the same seed is the same input.
//! assert_eq!(mutated, qcow2::mutate(&mut case_gen(Target::Qcow2, 7, 0), &images[0].bytes));
//! assert!(qcow2::check_image(&mutated).is_ok());
//! ```

pub mod daemon;
pub mod nbd;
pub mod oracle;
pub mod qcow2;
pub mod qmp;
pub mod run;

use quickcheck::{Arbitrary, Gen};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// One of the untrusted inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// Bytes on a QMP monitor socket.
    Qmp,
    /// A qcow2 image opened, read, checked and written.
    Qcow2,
    /// Bytes on an NBD export's socket.
    Nbd,
}

impl Target {
    /// Every target, in the order a run without `--target` takes them.
    pub const ALL: [Target; 3] = [Target::Qmp, Target::Qcow2, Target::Nbd];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Target::Qmp => "qmp",
            Target::Qcow2 => "qcow2",
            Target::Nbd => "nbd",
        }
    }

    /// The target called `name`.
    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// How long one input may take, at least, before it counts as a hang: a
/// refusal is cheap, and the largest work an input can ask for (a 32 MiB
/// NBD read, a check of an image) takes well under this.
pub const INPUT_TIME_LIMIT: Duration = Duration::from_secs(5);

/// How long an input of `len` bytes may take: [`INPUT_TIME_LIMIT`] plus
/// linear time in its length (200,000 one-byte JSON strings are 100,000
/// error replies; an unoptimised build of the tests needs ~25 us a byte).
pub fn time_limit(len: usize) -> Duration {
    INPUT_TIME_LIMIT + Duration::from_micros(25) * len as u32
}

/// SplitMix64's output function: spreads nearby seeds apart.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The generator of input `index` of `seed` for `target`: it depends on
/// these three only.
pub fn case_gen(target: Target, seed: u64, index: u64) -> Gen {
    let stream = mix(seed ^ mix(index ^ ((target as u64) << 56)));
    Gen::from_size_and_seed(64, stream)
}

/// A number in `0..n` (0 when `n` is 0).
pub fn below(g: &mut Gen, n: u64) -> u64 {
    u64::arbitrary(g) % n.max(1)
}

/// True `percent` times in a hundred.
pub fn chance(g: &mut Gen, percent: u64) -> bool {
    below(g, 100) < percent
}

/// One of `from`, or (one time in `from.len() + 1`) whatever `any` makes.
pub fn pick_or<T: Copy>(g: &mut Gen, from: &[T], any: fn(&mut Gen) -> T) -> T {
    match from.get(below(g, from.len() as u64 + 1) as usize) {
        Some(&value) => value,
        None => any(g),
    }
}

/// What an input did that it must not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Strata panicked (the message).
    Panic(String),
    /// The input took longer than [`INPUT_TIME_LIMIT`].
    Hang(Duration),
    /// The daemon died (how).
    Crash(String),
    /// The daemon or monitor no longer answered a well-formed request.
    Unanswered(String),
    /// The daemon's memory grew past the bound (KiB resident).
    Memory(u64),
    /// A malformed reply (not JSON, no CRLF, ...).
    BadReply(String),
    /// An image was changed although its open was refused, or opened
    /// read-only.
    WroteRefused(String),
    /// An image `check` found clean before the writes is corrupt after.
    Corrupted(String),
}

impl Failure {
    /// A short name for counting failures by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Panic(_) => "panic",
            Failure::Hang(_) => "hang",
            Failure::Crash(_) => "crash",
            Failure::Unanswered(_) => "unanswered",
            Failure::Memory(_) => "memory",
            Failure::BadReply(_) => "bad-reply",
            Failure::WroteRefused(_) => "wrote-refused-image",
            Failure::Corrupted(_) => "corrupted",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Panic(m) => write!(f, "panic: {m}"),
            Failure::Hang(d) => write!(f, "took {d:?}"),
            Failure::Crash(m) => write!(f, "daemon died: {m}"),
            Failure::Unanswered(m) => write!(f, "no answer: {m}"),
            Failure::Memory(kib) => write!(f, "{kib} KiB resident"),
            Failure::BadReply(m) => write!(f, "malformed reply: {m}"),
            Failure::WroteRefused(m) => write!(f, "image written: {m}"),
            Failure::Corrupted(m) => write!(f, "image corrupted: {m}"),
        }
    }
}

/// CPU time this thread has used: what an in-process run costs, however
/// loaded the machine is.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `f` on an input of `len` bytes, turning a panic into
/// [`Failure::Panic`] and a run that costs more CPU time than
/// [`time_limit`] into [`Failure::Hang`] (in process the work is all on
/// this thread; a daemon's inputs are bounded in wall time instead).
pub fn guarded<T>(len: usize, f: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
    let start = thread_cpu_time();
    let result = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(Failure::Panic(message))
    });
    let took = thread_cpu_time().saturating_sub(start);
    match result {
        Ok(_) if took > time_limit(len) => Err(Failure::Hang(took)),
        other => other,
    }
}
