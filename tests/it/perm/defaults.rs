//! `bdrv_default_perms` (QEMU 10.0 block.c), branch by branch, and the
//! worked results of qemu-block-graph.md §3.3 as QEMU printed them.

use super::*;
use strata_perm::DefaultPerms;

const NONE: Perm = Perm::NONE;
const CR_: Perm = Perm::CONSISTENT_READ;
const W_: Perm = Perm::WRITE;
const WU_: Perm = Perm::WRITE_UNCHANGED;
const RS_: Perm = Perm::RESIZE;
const ALL_: Perm = Perm::ALL;

/// (role, parent writable, parent perm, parent shared) -> (child perm, child shared),
/// each row worked out by hand from block.c's three branches.
#[allow(clippy::type_complexity)]
const ROWS: &[(Role, bool, Perm, Perm, Perm, Perm)] = &[
    // FILTERED: pure pass-through both ways (DEFAULT_PERM_UNCHANGED is empty since 7.0).
    (Role::FILTERED_PRIMARY, true, NONE, ALL_, NONE, ALL_),
    (
        Role::FILTERED_PRIMARY,
        false,
        Perm::from_bits_truncate(0x0b),
        Perm::from_bits_truncate(0x05),
        Perm::from_bits_truncate(0x0b),
        Perm::from_bits_truncate(0x05),
    ),
    // COW: only consistent read, and only if the parent needs it; share write+resize
    // iff the parent shares write; always share consistent read and write-unchanged.
    (Role::COW, true, ALL_, ALL_, CR_, ALL_),
    (
        Role::COW,
        true,
        Perm::from_bits_truncate(0x0e),
        ALL_,
        NONE,
        ALL_,
    ),
    (
        Role::COW,
        true,
        CR_,
        Perm::from_bits_truncate(0x0d),
        CR_,
        Perm::from_bits_truncate(0x05),
    ),
    (
        Role::COW,
        false,
        NONE,
        NONE,
        NONE,
        Perm::from_bits_truncate(0x05),
    ),
    (Role::COW, false, NONE, W_, NONE, ALL_),
    // IMAGE (DATA|METADATA): a writable parent takes write+resize and consistent read,
    // unshares write and resize.
    (
        Role::IMAGE,
        true,
        NONE,
        ALL_,
        Perm::from_bits_truncate(0x0b),
        Perm::from_bits_truncate(0x05),
    ),
    (
        Role::IMAGE,
        true,
        Perm::from_bits_truncate(0x05),
        Perm::from_bits_truncate(0x07),
        Perm::from_bits_truncate(0x0f),
        Perm::from_bits_truncate(0x05),
    ),
    // A read-only parent still reads and still unshares write and resize.
    (
        Role::IMAGE,
        false,
        NONE,
        ALL_,
        CR_,
        Perm::from_bits_truncate(0x05),
    ),
    (Role::IMAGE, false, NONE, CR_, CR_, CR_),
    // METADATA only (a qcow2 data-file's image file, a luks header).
    (
        Role::METADATA,
        true,
        NONE,
        ALL_,
        Perm::from_bits_truncate(0x0b),
        Perm::from_bits_truncate(0x05),
    ),
    (
        Role::METADATA,
        false,
        WU_,
        ALL_,
        Perm::from_bits_truncate(0x05),
        Perm::from_bits_truncate(0x05),
    ),
    // DATA only (qcow2 data-file): write-unchanged implies write implies resize;
    // resize is never shared.
    (
        Role::DATA,
        true,
        WU_,
        ALL_,
        Perm::from_bits_truncate(0x0e),
        Perm::from_bits_truncate(0x07),
    ),
    (
        Role::DATA,
        false,
        W_,
        ALL_,
        Perm::from_bits_truncate(0x0a),
        Perm::from_bits_truncate(0x07),
    ),
    (Role::DATA, true, NONE, CR_, NONE, CR_),
    (Role::DATA, true, RS_, RS_, RS_, NONE),
];

#[test]
fn default_child_perm_follows_the_role() {
    let mut g = Graph::new(0);
    let rw = g
        .add_node(NodeSpec::new("qcow2", FORMAT).name("rw"))
        .unwrap();
    let ro = g
        .add_node(NodeSpec::new("qcow2", FORMAT).name("ro").read_only(true))
        .unwrap();
    let queue = ReopenQueue::default();
    for (i, &(role, writable, perm, shared, nperm, nshared)) in ROWS.iter().enumerate() {
        let parent = if writable { rw } else { ro };
        assert_eq!(
            default_child_perm(&g, parent, role, perm, shared, &queue),
            (nperm, nshared),
            "row {i}: {role:?} writable={writable} {perm:?}/{shared:?}"
        );
    }
}

#[test]
fn writability_is_taken_after_the_pending_reopen() {
    let mut g = Graph::new(0);
    let ro = g
        .add_node(NodeSpec::new("qcow2", FORMAT).name("ro").read_only(true))
        .unwrap();
    let rw = g
        .add_node(NodeSpec::new("qcow2", FORMAT).name("rw"))
        .unwrap();
    let to_rw = ReopenQueue::default().set_read_only(ro, false);
    let to_ro = ReopenQueue::default().set_read_only(rw, true);
    let full = Perm::CONSISTENT_READ | Perm::WRITE | Perm::RESIZE;
    let shared = Perm::CONSISTENT_READ | Perm::WRITE_UNCHANGED;
    assert_eq!(
        default_child_perm(&g, ro, Role::IMAGE, NONE, ALL_, &to_rw),
        (full, shared)
    );
    assert_eq!(
        default_child_perm(&g, rw, Role::IMAGE, NONE, ALL_, &to_ro),
        (CR_, shared)
    );
    assert!(to_rw.writable_after(&g, ro));
    assert!(!to_ro.writable_after(&g, rw));
    assert!(
        !to_ro.writable_after(&g, ro),
        "a node outside the queue keeps its flag"
    );
}

#[test]
fn worked_results_match_qemu() {
    // A writable qcow2 with no parents, and an overlay `top` reading it as backing:
    // -> {"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "base",
    //     "file": {"driver": "file", "filename": "base.qcow2", "node-name": "base-file"}, "backing": null}}
    // -> {"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "top",
    //     "file": {"driver": "file", "filename": "top.qcow2", "node-name": "top-file"}, "backing": "base"}}
    // -> {"execute": "x-debug-query-block-graph"}
    // <- (top, file, top-file):   perm [resize, write, consistent-read], shared [write-unchanged, consistent-read]
    //    (top, backing, base):    perm [], shared [resize, write-unchanged, write, consistent-read]
    //    (base, file, base-file): perm [resize, write, consistent-read], shared [write-unchanged, consistent-read]
    // (nothing reads top, so top takes nothing from base.)
    let hooks = &DefaultPerms;
    let mut bg = BlockGraph::new(0);
    let n = chain(&mut bg, hooks, &["base", "top"], |_| false);
    let expected = [
        ("top", "file", "top-file", &[RS, W, CR][..], &[WU, CR][..]),
        ("top", "backing", "base", &[], ALL),
        ("base", "file", "base-file", &[RS, W, CR], &[WU, CR]),
    ];
    assert_eq!(shown_edges(&bg), expected_edges(&expected));
    // A reader of top makes top read its backing consistently, and top's shared
    // (everything) lets base share write and resize.
    root_on(
        &mut bg,
        hooks,
        RootKind::Backend { name: None },
        n[1],
        "root",
        CR_,
        ALL_,
    )
    .unwrap();
    let backing = bg.graph().node(n[1]).unwrap().backing().unwrap();
    let e = bg.graph().edge(backing).unwrap();
    assert_eq!((e.perm, e.shared), (CR_, ALL_));
    assert_perms_fresh(&bg, hooks);
}
