//! strata-qmp against qemu-storage-daemon 10.0.2.
//!
//! Every table row here is an exchange recorded with the real daemon:
//!
//! ```text
//! qemu-storage-daemon --chardev socket,path=$DIR/qmp.sock,server=on,wait=off,id=m0 --monitor chardev=m0
//! ```
//!
//! one fresh connection per row: read the greeting, send
//! `{"execute":"qmp_capabilities"}\n` when the row says `negotiated`, send
//! `input` verbatim, and record every byte qsd sent back within 250 ms as
//! `output`.  The rows were produced that way (a small Python client), and
//! [`oracle`] replays them against the installed daemon on every test run, so
//! a row that QEMU does not confirm fails.

mod cli;
mod dispatch;
mod oracle;
mod props;
mod protocol;
mod validation;

use strata_qmp::serde_json::Value;
use strata_qmp::{Command, CommandHandler, EventSink, QmpError, Session, SessionConfig};

/// One recorded exchange.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// Send `qmp_capabilities` first (its answer is not part of `output`).
    pub negotiated: bool,
    /// The bytes the client sends.
    pub input: &'static [u8],
    /// Everything qsd answered, byte for byte.
    pub output: &'static str,
}

/// A handler for tables in which no request may reach the block layer.
pub struct Unreachable;

impl CommandHandler for Unreachable {
    fn dispatch(&mut self, command: Command, _events: &mut EventSink) -> Result<Value, QmpError> {
        panic!("this request should have been answered by the session: {command:?}")
    }
}

/// What a fresh [`Session`] answers to `input` (after the greeting, and
/// after negotiation when asked).
pub fn session_output(negotiated: bool, input: &[u8], handler: &mut dyn CommandHandler) -> String {
    let mut session = Session::new(SessionConfig::default());
    session.take_output();
    if negotiated {
        session.feed(b"{\"execute\":\"qmp_capabilities\"}\n", handler);
        assert_eq!(session.take_output(), b"{\"return\": {}}\r\n");
    }
    session.feed(input, handler);
    String::from_utf8(session.take_output()).expect("QMP output is ASCII")
}

/// Checks every row against a fresh session; reports all mismatches at once.
pub fn check_table(table: &[Case]) {
    let mut failures = Vec::new();
    for case in table {
        let got = session_output(case.negotiated, case.input, &mut Unreachable);
        if got != case.output {
            failures.push(format!(
                "input:    {}\nexpected: {}\ngot:      {}",
                String::from_utf8_lossy(case.input).escape_debug(),
                case.output.escape_debug(),
                got.escape_debug()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows differ:\n\n{}",
        failures.len(),
        table.len(),
        failures.join("\n\n")
    );
}
