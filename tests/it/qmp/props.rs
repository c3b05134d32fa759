//! Seeded properties of the JSON reader and writer.
//!
//! * Chunking never matters: every recorded protocol row gives the same
//!   bytes when fed one byte at a time (QEMU's lexer is byte-driven too).
//! * The writer and the reader agree: what [`to_qemu_json`] prints, the
//!   streamer reads back as the same value (doubles with integral values come
//!   back as integers, as they do in QEMU, since `%.17g` prints no `.0`).
//!
//! Replay with `STRATA_SEED=<n> cargo test -p strata-tests --test it qmp::props`.

use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};
use strata_qmp::{to_qemu_json, JsonStreamer, QDict, QObject, Session, SessionConfig};

const DEFAULT_SEED: u64 = 0x0071_6d70;

fn seed() -> u64 {
    let seed = std::env::var("STRATA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    println!("qmp::props: STRATA_SEED={seed}");
    seed
}

#[test]
fn byte_at_a_time_feeding_changes_nothing() {
    for case in super::protocol::TABLE {
        let mut session = Session::new(SessionConfig::default());
        session.take_output();
        if case.negotiated {
            session.feed(
                b"{\"execute\":\"qmp_capabilities\"}",
                &mut super::Unreachable,
            );
            session.take_output();
        }
        for byte in case.input {
            session.feed(std::slice::from_ref(byte), &mut super::Unreachable);
        }
        assert_eq!(
            String::from_utf8(session.take_output()).unwrap(),
            case.output,
            "{}",
            String::from_utf8_lossy(case.input).escape_debug()
        );
    }
}

/// A JSON value QEMU can hold (strings without noncharacters, which QEMU
/// refuses; finite doubles).
#[derive(Clone, Debug)]
struct Json(QObject);

fn arbitrary_string(g: &mut Gen) -> String {
    String::arbitrary(g)
        .chars()
        .filter(|&c| {
            let cp = c as u32;
            !(0xFDD0..=0xFDEF).contains(&cp) && (cp & 0xFFFE) != 0xFFFE
        })
        .collect()
}

fn arbitrary_value(g: &mut Gen, depth: u32) -> QObject {
    let kinds = if depth == 0 { 6 } else { 8 };
    match u8::arbitrary(g) % kinds {
        0 => QObject::Null,
        1 => QObject::Bool(bool::arbitrary(g)),
        2 => QObject::Int(i64::arbitrary(g)),
        3 => QObject::Uint(u64::arbitrary(g) | 1 << 63),
        4 => {
            let d = f64::arbitrary(g);
            QObject::Double(if d.is_finite() { d } else { 0.5 })
        }
        5 => QObject::Str(arbitrary_string(g)),
        6 => QObject::List(
            (0..u8::arbitrary(g) % 5)
                .map(|_| arbitrary_value(g, depth - 1))
                .collect(),
        ),
        _ => {
            let mut dict = QDict::new();
            for _ in 0..u8::arbitrary(g) % 6 {
                dict.insert(arbitrary_string(g), arbitrary_value(g, depth - 1));
            }
            QObject::Dict(dict)
        }
    }
}

impl Arbitrary for Json {
    fn arbitrary(g: &mut Gen) -> Json {
        Json(arbitrary_value(g, 3))
    }
}

/// What reading back may change: integral doubles become integers.
fn normalise(v: &QObject) -> QObject {
    match v {
        QObject::Double(d) if d.fract() == 0.0 && d.abs() < 9.2e18 => QObject::Int(*d as i64),
        QObject::List(items) => QObject::List(items.iter().map(normalise).collect()),
        QObject::Dict(d) => {
            let mut out = QDict::new();
            let mut members: Vec<_> = d.iter_inserted().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            for (k, v) in members {
                out.insert(k, normalise(v));
            }
            QObject::Dict(out)
        }
        other => other.clone(),
    }
}

#[test]
fn writer_and_reader_agree() {
    fn prop(value: Json, pretty: bool) -> TestResult {
        let text = to_qemu_json(&value.0, pretty);
        let mut streamer = JsonStreamer::new();
        let mut out = Vec::new();
        // A trailing space ends a top-level scalar, as in QEMU.
        streamer.feed(format!("{text} ").as_bytes(), &mut out);
        if out.len() != 1 {
            return TestResult::error(format!("{text}: {out:?}"));
        }
        match &out[0] {
            Ok(read) if normalise(read) == normalise(&value.0) => TestResult::passed(),
            other => TestResult::error(format!("{text}: read back {other:?}")),
        }
    }
    QuickCheck::new()
        .rng(Gen::from_size_and_seed(40, seed()))
        .tests(500)
        .quickcheck(prop as fn(Json, bool) -> TestResult);
}
