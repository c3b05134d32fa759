//! Seeded quickcheck properties: crashes leave leaks at worst, and damaged
//! images never panic the reader.
//!
//! The base seed is `STRATA_SEED` (default 20261124); it is printed so a
//! failure can be replayed.

use super::*;
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};
use std::io;
use strata_formats::{BackingRead, Compat, CreateOptions, Qcow2, ZeroWrite};

fn base_seed() -> u64 {
    let seed = std::env::var("STRATA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261124);
    eprintln!("strata-formats properties: STRATA_SEED={seed}");
    seed
}

fn below(g: &mut Gen, n: u64) -> u64 {
    u64::arbitrary(g) % n.max(1)
}

/// One guest operation of a crash case.
#[derive(Clone, Debug)]
enum Op {
    Write {
        offset: u64,
        len: u64,
        seed: u8,
    },
    Zeroes {
        offset: u64,
        len: u64,
        zero_write: ZeroWrite,
    },
    Flush,
    Rebase(Option<String>),
}

/// An image geometry and the operations run on it.
#[derive(Clone, Debug)]
struct CrashCase {
    /// Virtual size: 2 MiB, or 1.5 KiB less (ending inside a cluster).
    size: u64,
    compat: Compat,
    cluster_bits: u32,
    refcount_bits: u32,
    with_backing: bool,
    ops: Vec<Op>,
}

impl Arbitrary for CrashCase {
    fn arbitrary(g: &mut Gen) -> CrashCase {
        let compat = *g.choose(&[Compat::V2, Compat::V3]).unwrap();
        let refcount_bits = match compat {
            Compat::V2 => 16,
            Compat::V3 => *g.choose(&[1, 2, 4, 8, 16, 32, 64]).unwrap(),
        };
        let cluster_bits = *g.choose(&[9, 10, 12, 16]).unwrap();
        let cs = 1u64 << cluster_bits;
        let size = (2 << 20) - *g.choose(&[0, 1536]).unwrap();
        let n = 1 + below(g, 12) as usize;
        let ops = (0..n)
            .map(|_| {
                // Most operations hit a few hot clusters, so that writes
                // land on clusters earlier operations allocated or zeroed;
                // some hit the image's (possibly partial) last clusters.
                let offset = match below(g, 10) {
                    0..=5 => below(g, 6 * cs),
                    6..=8 => size - 1 - below(g, (4 * cs).min(size)),
                    _ => below(g, size),
                };
                let len = (1 + below(g, 3 * cs + 1000)).min(size - offset);
                match below(g, 10) {
                    0..=5 => Op::Write {
                        offset,
                        len,
                        seed: u8::arbitrary(g),
                    },
                    6 | 7 => Op::Zeroes {
                        offset,
                        len,
                        zero_write: if bool::arbitrary(g) {
                            ZeroWrite::MayUnmap
                        } else {
                            ZeroWrite::KeepAllocated
                        },
                    },
                    8 => Op::Flush,
                    _ => Op::Rebase(
                        g.choose(&[
                            None,
                            Some("b.qcow2".to_string()),
                            Some("json:{}".to_string()),
                        ])
                        .unwrap()
                        .clone(),
                    ),
                }
            })
            .collect();
        CrashCase {
            size,
            compat,
            cluster_bits,
            refcount_bits,
            with_backing: bool::arbitrary(g),
            ops,
        }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = CrashCase>> {
        let me = self.clone();
        Box::new((0..self.ops.len()).rev().map(move |i| {
            let mut c = me.clone();
            c.ops.remove(i);
            c
        }))
    }
}

/// A storage that records the states a crash could leave behind.
trait CrashStorage: Storage {
    /// The image was created (and flushed): crash states count from here.
    fn created(&mut self);
    /// The states recorded since creation.
    fn crash_states(&self) -> &[MemStorage];
}

/// Writes reach the disk in order: a crash right after a write leaves
/// every write up to it (and its crash view, everything up to the last
/// flush).
struct InOrder {
    inner: MemStorage,
    states: Vec<MemStorage>,
}

impl Storage for InOrder {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset, buf)?;
        self.states.push(self.inner.clone());
        self.states.push(self.inner.crash_view());
        Ok(())
    }
    fn len(&mut self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl CrashStorage for InOrder {
    fn created(&mut self) {
        self.inner.flush().unwrap();
        self.states.clear();
    }
    fn crash_states(&self) -> &[MemStorage] {
        &self.states
    }
}

/// Writes since the last flush may reach the disk in any order: a crash
/// right after a write leaves the flushed state plus any subset of the
/// writes since (chosen by a seeded generator).
struct Reordering {
    current: MemStorage,
    flushed: MemStorage,
    unflushed: Vec<(u64, Vec<u8>)>,
    rng: u64,
    states: Vec<MemStorage>,
}

impl Reordering {
    fn coin(&mut self) -> bool {
        // xorshift64: deterministic from the case's seed.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng & 1 == 1
    }
}

impl Storage for Reordering {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.current.read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.current.write_at(offset, buf)?;
        self.unflushed.push((offset, buf.to_vec()));
        let mut state = self.flushed.clone();
        for i in 0..self.unflushed.len() {
            if self.coin() {
                let (offset, bytes) = &self.unflushed[i];
                state.write_at(*offset, bytes)?;
            }
        }
        self.states.push(state);
        Ok(())
    }
    fn len(&mut self) -> io::Result<u64> {
        self.current.len()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        // Only creation truncates, before crash states count.
        self.current.set_len(len)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.flushed = self.current.clone();
        self.unflushed.clear();
        Ok(())
    }
}

impl CrashStorage for Reordering {
    fn created(&mut self) {
        self.flush().unwrap();
        self.states.clear();
    }
    fn crash_states(&self) -> &[MemStorage] {
        &self.states
    }
}

/// A backing file whose bytes are a pattern.
struct PatternBacking;

impl BackingRead for PatternBacking {
    fn read_backing(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = ((offset + i as u64) % 251) as u8;
        }
        Ok(())
    }
}

/// Runs the case's operations on `st`; `Some(failure)` if the final image
/// does not read back what was written or is not clean.
fn run_case<S: CrashStorage>(case: &CrashCase, st: &mut S, barriers: bool) -> Option<TestResult> {
    let size = case.size;
    let opts = CreateOptions::new(size)
        .compat(case.compat)
        .cluster_size(1 << case.cluster_bits)
        .refcount_bits(case.refcount_bits);
    let mut q = Qcow2::create(st, &opts).expect("create");
    q.set_barriers(barriers);
    st.created();
    let mut model: Vec<u8> = match case.with_backing {
        true => (0..size).map(|i| (i % 251) as u8).collect(),
        false => vec![0; size as usize],
    };
    let mut pattern_backing = PatternBacking;
    for op in &case.ops {
        let backing: Option<&mut dyn BackingRead> = match case.with_backing {
            true => Some(&mut pattern_backing),
            false => None,
        };
        match op {
            Op::Write { offset, len, seed } => {
                let data = pattern(*seed, *len as usize);
                q.write(st, *offset, &data, backing).expect("write");
                model[*offset as usize..(*offset + *len) as usize].copy_from_slice(&data);
            }
            Op::Zeroes {
                offset,
                len,
                zero_write,
            } => {
                q.write_zeroes(st, *offset, *len, *zero_write, backing)
                    .expect("write_zeroes");
                model[*offset as usize..(*offset + *len) as usize].fill(0);
            }
            Op::Flush => q.flush(st).expect("flush"),
            Op::Rebase(name) => {
                let fmt = name.as_ref().map(|_| "qcow2");
                q.change_backing_file(st, name.as_deref(), fmt)
                    .expect("rebase")
            }
        }
    }
    let mut got = vec![0u8; size as usize];
    let backing: Option<&mut dyn BackingRead> = match case.with_backing {
        true => Some(&mut pattern_backing),
        false => None,
    };
    q.read(st, 0, &mut got, backing).expect("read back");
    if got != model {
        return Some(TestResult::error(
            "final image reads other bytes than were written",
        ));
    }
    let report = q.check(st).expect("check");
    if !report.is_clean() {
        return Some(TestResult::error(format!(
            "final image not clean: {report:?}"
        )));
    }
    None
}

/// Every recorded crash state opens and has no corruption.
fn check_crash_states(states: &[MemStorage]) -> TestResult {
    for (k, state) in states.iter().enumerate() {
        let mut storage = state.clone();
        let mut image = match Qcow2::open(&mut storage, Access::ReadOnly) {
            Ok(i) => i,
            Err(e) => return TestResult::error(format!("crash state {k}: open failed: {e}")),
        };
        match image.check(&mut storage) {
            Ok(r) if r.corruptions == 0 => {}
            Ok(r) => return TestResult::error(format!("crash state {k}: {:?}", r.messages)),
            Err(e) => return TestResult::error(format!("crash state {k}: check failed: {e}")),
        }
    }
    TestResult::passed()
}

fn in_order_property(case: CrashCase) -> TestResult {
    let mut st = InOrder {
        inner: MemStorage::new(),
        states: Vec::new(),
    };
    run_case(&case, &mut st, false).unwrap_or_else(|| check_crash_states(st.crash_states()))
}

fn reordering_property(case: CrashCase, subset_seed: u64) -> TestResult {
    let mut st = Reordering {
        current: MemStorage::new(),
        flushed: MemStorage::new(),
        unflushed: Vec::new(),
        rng: subset_seed | 1,
        states: Vec::new(),
    };
    run_case(&case, &mut st, true).unwrap_or_else(|| check_crash_states(st.crash_states()))
}

#[test]
fn a_crash_after_any_write_leaves_leaks_at_worst() {
    let seed = base_seed();
    QuickCheck::new()
        .rng(Gen::from_size_and_seed(100, seed))
        .tests(150)
        .quickcheck(in_order_property as fn(CrashCase) -> TestResult);
}

#[test]
fn with_barriers_a_power_cut_reordering_unflushed_writes_leaves_leaks_at_worst() {
    let seed = base_seed().wrapping_add(2);
    QuickCheck::new()
        .rng(Gen::from_size_and_seed(100, seed))
        .tests(100)
        .quickcheck(reordering_property as fn(CrashCase, u64) -> TestResult);
}

/// Valid images to damage: Strata-made (v3 512 B clusters with zero
/// clusters and a backing name; v2 64 KiB) and qemu-made (compressed
/// clusters and an internal snapshot).
fn pristine_images() -> &'static [(&'static str, Vec<u8>)] {
    static IMAGES: std::sync::OnceLock<Vec<(&'static str, Vec<u8>)>> = std::sync::OnceLock::new();
    IMAGES.get_or_init(|| {
        let mut small = MemStorage::new();
        let opts = CreateOptions::new(1 << 20)
            .cluster_size(512)
            .refcount_bits(4)
            .backing("b.qcow2", Some("qcow2"));
        let mut q = Qcow2::create(&mut small, &opts).unwrap();
        q.write(&mut small, 1000, &pattern(1, 70_000), None)
            .unwrap();
        q.write_zeroes(&mut small, 200_000, 100_000, ZeroWrite::MayUnmap, None)
            .unwrap();
        let mut v2 = MemStorage::new();
        let mut q =
            Qcow2::create(&mut v2, &CreateOptions::new(4 << 20).compat(Compat::V2)).unwrap();
        q.write(&mut v2, 70_000, &pattern(2, 300_000), None)
            .unwrap();
        let scratch = Scratch::new("pristine");
        let path = scratch.path("snap.qcow2");
        run(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                "cluster_size=4096",
                p(&path),
                "1M",
            ],
        );
        qemu_io(
            &path,
            &[
                "write -P 1 0 64k",
                "write -c -P 2 128k 4k",
                "write -z 256k 8k",
            ],
        );
        run("qemu-img", &["snapshot", "-c", "s1", p(&path)]);
        qemu_io(&path, &["write -P 3 0 4k"]);
        vec![
            ("strata-v3-512", small.to_vec()),
            ("strata-v2-64k", v2.to_vec()),
            ("qemu-snapshot", std::fs::read(&path).unwrap()),
        ]
    })
}

/// Damage done to a valid image.
#[derive(Clone, Debug)]
enum Damage {
    /// XOR a byte (offsets favour the first clusters, where the metadata is).
    Flip { offset: u64, xor: u8 },
    /// Cut the file.
    Truncate { len: u64 },
}

#[derive(Clone, Debug)]
struct DamageCase {
    image: usize,
    damage: Vec<Damage>,
}

impl Arbitrary for DamageCase {
    fn arbitrary(g: &mut Gen) -> DamageCase {
        let image = below(g, 3) as usize;
        let len = pristine_images()[image].1.len() as u64;
        let n = 1 + below(g, 8) as usize;
        let damage = (0..n)
            .map(|_| match below(g, 12) {
                0 => Damage::Truncate { len: below(g, len) },
                1..=6 => Damage::Flip {
                    offset: below(g, len.min(16 << 10)),
                    xor: u8::arbitrary(g) | 1,
                },
                _ => Damage::Flip {
                    offset: below(g, len),
                    xor: u8::arbitrary(g) | 1,
                },
            })
            .collect();
        DamageCase { image, damage }
    }
}

fn damage_property(case: DamageCase) -> bool {
    let mut bytes = pristine_images()[case.image].1.clone();
    for d in &case.damage {
        match *d {
            Damage::Flip { offset, xor } if (offset as usize) < bytes.len() => {
                bytes[offset as usize] ^= xor
            }
            Damage::Flip { .. } => {}
            Damage::Truncate { len } => bytes.truncate(len as usize),
        }
    }
    for access in [Access::ReadOnly, Access::ReadWrite] {
        let mut st = MemStorage::from_bytes(&bytes);
        let Ok(mut q) = Qcow2::open(&mut st, access) else {
            continue;
        };
        let size = q.virtual_size().min(8 << 20);
        let mut buf = vec![0u8; 64 << 10];
        for offset in (0..size).step_by(buf.len()) {
            let n = (size - offset).min(buf.len() as u64) as usize;
            let _ = q.read(&mut st, offset, &mut buf[..n], None);
        }
        let mut pos = 0;
        while pos < size {
            match q.block_status(&mut st, pos, size - pos) {
                Ok(e) if e.len > 0 => pos = e.end(),
                _ => break,
            }
        }
        let _ = q.check(&mut st);
        if access == Access::ReadWrite {
            let _ = q.write(&mut st, 4096.min(size / 2), &[0x5a; 5000], None);
            let _ = q.write_zeroes(&mut st, 0, size.min(1 << 20), ZeroWrite::MayUnmap, None);
            let _ = q.change_backing_file(&mut st, Some("x"), Some("raw"));
            let _ = q.check(&mut st);
        }
    }
    true
}

#[test]
fn damaged_images_never_panic_the_reader() {
    let seed = base_seed().wrapping_add(1);
    QuickCheck::new()
        .rng(Gen::from_size_and_seed(100, seed))
        .tests(400)
        .quickcheck(damage_property as fn(DamageCase) -> bool);
}
