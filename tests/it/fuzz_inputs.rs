//! The untrusted inputs (issue 14), a short seeded batch of each in
//! process: QMP bytes on the monitor, damaged qcow2 images, NBD
//! conversations on an export of a qcow2 chain. `cargo xtask fuzz-inputs`
//! runs the same inputs for longer against a real strata-qsd
//! (docs/FUZZ-INPUTS.md).
//!
//! Replay with `STRATA_SEED=<n> cargo test -p strata-tests --test it fuzz_inputs`.

use strata_fuzz_inputs::{case_gen, nbd, qcow2, qmp, Failure, Target};

fn seed() -> u64 {
    let seed = std::env::var("STRATA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(14);
    println!("fuzz_inputs: STRATA_SEED={seed}");
    seed
}

/// Runs `cases` inputs of `target`; the failures with their indexes.
fn batch(
    target: Target,
    cases: u64,
    mut run: impl FnMut(&mut quickcheck::Gen) -> Result<(), Failure>,
) -> Vec<(u64, Failure)> {
    let seed = seed();
    (0..cases)
        .filter_map(|i| run(&mut case_gen(target, seed, i)).err().map(|f| (i, f)))
        .collect()
}

#[test]
fn qmp_inputs_never_break_the_monitor() {
    let mut monitor = qmp::InProcess::new();
    let failures = batch(Target::Qmp, 400, |g| monitor.run(&qmp::generate(g)));
    assert_eq!(failures, []);
}

#[test]
fn damaged_qcow2_images_are_refused_unwritten_or_used_safely() {
    let scratch = tempfile::tempdir().unwrap();
    let mut images = qcow2::pristine_images();
    images.extend(qcow2::qemu_images(scratch.path()).unwrap());
    let mut opened = 0;
    let failures = batch(Target::Qcow2, 300, |g| {
        let pristine = &images[strata_fuzz_inputs::below(g, images.len() as u64) as usize];
        let decisions = qcow2::check_image(&qcow2::mutate(g, &pristine.bytes))?;
        opened += u32::from(decisions.read_write.is_ok());
        Ok(())
    });
    assert_eq!(failures, []);
    // The damage leaves many images usable: the writes are exercised.
    assert!(opened > 30, "{opened} of 300 opened read-write");
}

#[test]
fn nbd_conversations_never_break_the_export() {
    let mut export = nbd::InProcess::new();
    let failures = batch(Target::Nbd, 300, |g| export.run(&nbd::generate(g)));
    assert_eq!(failures, []);
    export.check_images().unwrap();
}
