//! QEMU's `JobSTT` and `JobVerbTable` (job.c, 10.0), the enums' wire
//! names, and the refusal text.

use strata_jobs::{
    BlockErrorAction, BlockdevOnError, IoOperation, IoStatus, JobStatus, JobTable, JobType,
    JobVerb, MirrorCopyMode,
};

/// The letters job.c uses for the statuses, in QAPI order.
const LETTERS: &str = "UCRPYSWDXEN";

fn status(letter: char) -> JobStatus {
    JobStatus::ALL[LETTERS.find(letter).unwrap()]
}

/// `JobSTT` as rows "from: allowed targets" (qemu-block-graph.md §6.2).
const STT: [(char, &str); 11] = [
    ('U', "C"),
    ('C', "RXN"),
    ('R', "PYWX"),
    ('P', "R"),
    ('Y', "SWX"),
    ('S', "Y"),
    ('W', "DX"),
    ('D', "XE"),
    ('X', "XE"),
    ('E', "N"),
    ('N', ""),
];

/// `JobVerbTable` as rows "verb: statuses that accept it" (§6.3; complete
/// in standby since 6.0, change since 8.2).
const VERBS: [(&str, &str); 8] = [
    ("cancel", "CRPYSWD"),
    ("pause", "CRPYS"),
    ("resume", "CRPYS"),
    ("set-speed", "CRPYS"),
    ("complete", "YS"),
    ("dismiss", "E"),
    ("finalize", "D"),
    ("change", "CRPYS"),
];

#[test]
fn transition_table_is_qemus() {
    for (from, targets) in STT {
        for to in LETTERS.chars() {
            assert_eq!(
                JobTable::transition_allowed(status(from), status(to)),
                targets.contains(to),
                "JobSTT[{from}][{to}]"
            );
        }
    }
}

#[test]
fn verb_table_is_qemus() {
    for (verb, statuses) in VERBS {
        let verb = JobVerb::from_qapi(verb).unwrap();
        for letter in LETTERS.chars() {
            assert_eq!(
                JobTable::verb_allowed(verb, status(letter)),
                statuses.contains(letter),
                "JobVerbTable[{verb}][{letter}]"
            );
        }
    }
}

#[test]
fn qapi_names_and_order() {
    let names = |all: Vec<&'static str>| all.join(" ");
    assert_eq!(
        names(JobStatus::ALL.iter().map(|s| s.as_str()).collect()),
        "undefined created running paused ready standby waiting pending aborting concluded null"
    );
    assert_eq!(
        names(JobVerb::ALL.iter().map(|v| v.as_str()).collect()),
        "cancel pause resume set-speed complete dismiss finalize change"
    );
    assert_eq!(
        names(JobType::ALL.iter().map(|t| t.as_str()).collect()),
        "commit stream mirror backup create amend snapshot-load snapshot-save snapshot-delete"
    );
    assert_eq!(
        names(BlockdevOnError::ALL.iter().map(|p| p.as_str()).collect()),
        "report ignore enospc stop auto"
    );
    assert_eq!(
        names(BlockErrorAction::ALL.iter().map(|a| a.as_str()).collect()),
        "ignore report stop"
    );
    assert_eq!(
        names(IoStatus::ALL.iter().map(|s| s.as_str()).collect()),
        "ok failed nospace"
    );
    assert_eq!(
        names(IoOperation::ALL.iter().map(|o| o.as_str()).collect()),
        "read write"
    );
    assert_eq!(
        names(MirrorCopyMode::ALL.iter().map(|m| m.as_str()).collect()),
        "background write-blocking"
    );
    for s in JobStatus::ALL {
        assert_eq!(JobStatus::from_qapi(s.as_str()), Some(*s));
    }
    assert_eq!(JobType::from_qapi("stream"), Some(JobType::Stream));
    assert_eq!(JobType::from_qapi("Stream"), None);
}

#[test]
fn block_job_types() {
    let block: Vec<_> = JobType::ALL
        .iter()
        .filter(|t| t.is_block_job())
        .map(|t| t.as_str())
        .collect();
    assert_eq!(block, ["commit", "stream", "mirror", "backup"]);
}
