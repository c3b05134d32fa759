//! Backend calls handed from connection threads to the thread that owns the
//! exports, and the answers handed back.
//!
//! A connection thread's [`RemoteExports`] turns every [`ExportLookup`] and
//! [`NbdBackend`] call into an [`ExportCall`] sent over a channel, then
//! blocks on a one-answer reply channel.  The owner runs calls with
//! [`ExportCall::run`].  If the owner drops the receiver, queued calls are
//! dropped with it, which drops their reply senders: every waiting or later
//! caller gets an error (`ESHUTDOWN`), never a hang.
//!
//! The channels are crossbeam's; under `--cfg loom` they are replaced by a
//! small channel on loom's primitives with the same interface, so that the
//! loom tests below explore the handoff's interleavings.

use std::fmt;
use std::io;

use super::backend::{ExportLookup, NbdBackend, ZeroFlags};
use super::wire::errno;

#[cfg(not(loom))]
use crossbeam::channel as chan;

/// The receiving end of a server's backend calls (a crossbeam receiver,
/// so it can sit in a `select!`).
pub type CallReceiver = chan::Receiver<ExportCall>;

/// One backend call from a connection thread, waiting to be run by the
/// thread that owns the exports.
pub struct ExportCall {
    export: String,
    op: Op,
    reply: chan::Sender<Answer>,
}

enum Op {
    Names,
    Description,
    Probe,
    Read {
        offset: u64,
        len: u32,
    },
    Write {
        offset: u64,
        data: Vec<u8>,
    },
    Flush,
    Trim {
        offset: u64,
        len: u64,
    },
    WriteZeroes {
        offset: u64,
        len: u64,
        flags: ZeroFlags,
    },
    BlockStatus {
        offset: u64,
        len: u32,
    },
    Cache {
        offset: u64,
        len: u32,
    },
}

enum Answer {
    Names(Vec<String>),
    Description(Option<String>),
    /// Size and read-only flag, if the export exists.
    Probe(Option<(u64, bool)>),
    Data(io::Result<Vec<u8>>),
    Done(io::Result<()>),
    Extents(io::Result<Vec<(u32, u32)>>),
}

impl fmt::Debug for ExportCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match &self.op {
            Op::Names => "names",
            Op::Description => "description",
            Op::Probe => "probe",
            Op::Read { .. } => "read",
            Op::Write { .. } => "write",
            Op::Flush => "flush",
            Op::Trim { .. } => "trim",
            Op::WriteZeroes { .. } => "write-zeroes",
            Op::BlockStatus { .. } => "block-status",
            Op::Cache { .. } => "cache",
        };
        f.debug_struct("ExportCall")
            .field("export", &self.export)
            .field("op", &op)
            .finish()
    }
}

fn export_gone() -> io::Error {
    io::Error::from_raw_os_error(errno::ESHUTDOWN as i32)
}

impl ExportCall {
    /// The export the call is for (empty for the list of names).
    pub fn export(&self) -> &str {
        &self.export
    }

    /// Run the call against `exports` and hand the answer back.  A caller
    /// that has gone away in the meantime is ignored.
    pub fn run(self, exports: &mut dyn ExportLookup) {
        let answer = match self.op {
            Op::Names => Answer::Names(exports.export_names()),
            Op::Description => Answer::Description(exports.description(&self.export)),
            Op::Probe => Answer::Probe(
                exports
                    .backend(&self.export)
                    .map(|b| (b.size(), b.read_only())),
            ),
            op => match exports.backend(&self.export) {
                None => io_answer(op, Err(export_gone())),
                Some(backend) => run_io(op, backend),
            },
        };
        let _ = self.reply.send(answer);
    }
}

/// The answer an I/O call gets when it cannot run.
fn io_answer(op: Op, error: io::Result<()>) -> Answer {
    match op {
        Op::Read { .. } => Answer::Data(error.map(|()| Vec::new())),
        Op::BlockStatus { .. } => Answer::Extents(error.map(|()| Vec::new())),
        _ => Answer::Done(error),
    }
}

fn run_io(op: Op, backend: &mut dyn NbdBackend) -> Answer {
    match op {
        Op::Read { offset, len } => {
            let mut data = vec![0; len as usize];
            Answer::Data(backend.read(offset, &mut data).map(|()| data))
        }
        Op::Write { offset, data } => Answer::Done(backend.write(offset, &data)),
        Op::Flush => Answer::Done(backend.flush()),
        Op::Trim { offset, len } => Answer::Done(backend.trim(offset, len)),
        Op::WriteZeroes { offset, len, flags } => {
            Answer::Done(backend.write_zeroes(offset, len, flags))
        }
        Op::BlockStatus { offset, len } => Answer::Extents(backend.block_status(offset, len)),
        Op::Cache { offset, len } => Answer::Done(backend.cache(offset, len)),
        Op::Names | Op::Description | Op::Probe => unreachable!("not an I/O call"),
    }
}

/// Send `op` for `export` and wait for its answer; `None` once the owner
/// has stopped serving.
fn call(calls: &chan::Sender<ExportCall>, export: &str, op: Op) -> Option<Answer> {
    let (reply, answer) = chan::bounded(1);
    calls
        .send(ExportCall {
            export: export.to_string(),
            op,
            reply,
        })
        .ok()?;
    answer.recv().ok()
}

/// The exports as seen from a connection thread: every call is forwarded
/// to the owner thread.
pub struct RemoteExports {
    calls: chan::Sender<ExportCall>,
    /// The backend handed out by the last [`ExportLookup::backend`].
    current: Option<RemoteBackend>,
}

impl fmt::Debug for RemoteExports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteExports").finish_non_exhaustive()
    }
}

impl Clone for RemoteExports {
    fn clone(&self) -> RemoteExports {
        RemoteExports {
            calls: self.calls.clone(),
            current: None,
        }
    }
}

impl RemoteExports {
    /// A forwarding lookup and the receiver its calls arrive on.
    pub fn channel() -> (RemoteExports, CallReceiver) {
        let (calls, receiver) = chan::unbounded();
        (
            RemoteExports {
                calls,
                current: None,
            },
            receiver,
        )
    }
}

impl ExportLookup for RemoteExports {
    fn export_names(&self) -> Vec<String> {
        match call(&self.calls, "", Op::Names) {
            Some(Answer::Names(names)) => names,
            _ => Vec::new(),
        }
    }

    fn description(&self, name: &str) -> Option<String> {
        match call(&self.calls, name, Op::Description) {
            Some(Answer::Description(d)) => d,
            _ => None,
        }
    }

    fn backend(&mut self, name: &str) -> Option<&mut dyn NbdBackend> {
        let Some(Answer::Probe(Some((size, read_only)))) = call(&self.calls, name, Op::Probe)
        else {
            return None;
        };
        let backend = RemoteBackend {
            export: name.to_string(),
            calls: self.calls.clone(),
            size,
            read_only,
        };
        Some(self.current.insert(backend) as &mut dyn NbdBackend)
    }
}

/// One export's backend on the owner thread, reached through calls.
struct RemoteBackend {
    export: String,
    calls: chan::Sender<ExportCall>,
    size: u64,
    read_only: bool,
}

impl RemoteBackend {
    fn done(&self, op: Op) -> io::Result<()> {
        match call(&self.calls, &self.export, op) {
            Some(Answer::Done(result)) => result,
            _ => Err(export_gone()),
        }
    }
}

impl NbdBackend for RemoteBackend {
    fn size(&mut self) -> u64 {
        self.size
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let len =
            u32::try_from(buf.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        match call(&self.calls, &self.export, Op::Read { offset, len }) {
            Some(Answer::Data(Ok(data))) if data.len() == buf.len() => {
                buf.copy_from_slice(&data);
                Ok(())
            }
            Some(Answer::Data(Err(e))) => Err(e),
            _ => Err(export_gone()),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.done(Op::Write {
            offset,
            data: data.to_vec(),
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.done(Op::Flush)
    }

    fn trim(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.done(Op::Trim { offset, len })
    }

    fn write_zeroes(&mut self, offset: u64, len: u64, flags: ZeroFlags) -> io::Result<()> {
        self.done(Op::WriteZeroes { offset, len, flags })
    }

    fn block_status(&mut self, offset: u64, len: u32) -> io::Result<Vec<(u32, u32)>> {
        match call(&self.calls, &self.export, Op::BlockStatus { offset, len }) {
            Some(Answer::Extents(result)) => result,
            _ => Err(export_gone()),
        }
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn cache(&mut self, offset: u64, len: u32) -> io::Result<()> {
        self.done(Op::Cache { offset, len })
    }
}

/// crossbeam's channel interface (the part used here) on loom's
/// primitives, with crossbeam's disconnection rules: sending fails once the
/// receiver is gone, dropping the receiver drops queued messages, and
/// receiving fails once the queue is empty and every sender is gone.
#[cfg(loom)]
mod chan {
    use std::collections::VecDeque;
    use std::fmt;

    use loom::sync::{Arc, Condvar, Mutex};

    pub use crossbeam::channel::{RecvError, SendError, TryRecvError};

    struct State<T> {
        items: VecDeque<T>,
        senders: usize,
        receiver: bool,
    }

    struct Shared<T> {
        state: Mutex<State<T>>,
        ready: Condvar,
    }

    pub struct Sender<T>(Arc<Shared<T>>);
    pub struct Receiver<T>(Arc<Shared<T>>);

    pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                items: VecDeque::new(),
                senders: 1,
                receiver: true,
            }),
            ready: Condvar::new(),
        });
        (Sender(Arc::clone(&shared)), Receiver(shared))
    }

    /// Reply channels carry one message, so capacity does not matter here.
    pub fn bounded<T>(_capacity: usize) -> (Sender<T>, Receiver<T>) {
        unbounded()
    }

    impl<T> Sender<T> {
        pub fn send(&self, item: T) -> Result<(), SendError<T>> {
            let mut state = self.0.state.lock().unwrap();
            if !state.receiver {
                return Err(SendError(item));
            }
            state.items.push_back(item);
            drop(state);
            self.0.ready.notify_all();
            Ok(())
        }
    }

    impl<T> Clone for Sender<T> {
        fn clone(&self) -> Sender<T> {
            self.0.state.lock().unwrap().senders += 1;
            Sender(Arc::clone(&self.0))
        }
    }

    impl<T> Drop for Sender<T> {
        fn drop(&mut self) {
            let mut state = self.0.state.lock().unwrap();
            state.senders -= 1;
            let last = state.senders == 0;
            drop(state);
            if last {
                self.0.ready.notify_all();
            }
        }
    }

    impl<T> Receiver<T> {
        pub fn recv(&self) -> Result<T, RecvError> {
            let mut state = self.0.state.lock().unwrap();
            loop {
                if let Some(item) = state.items.pop_front() {
                    return Ok(item);
                }
                if state.senders == 0 {
                    return Err(RecvError);
                }
                state = self.0.ready.wait(state).unwrap();
            }
        }

        pub fn try_recv(&self) -> Result<T, TryRecvError> {
            let mut state = self.0.state.lock().unwrap();
            match state.items.pop_front() {
                Some(item) => Ok(item),
                None if state.senders == 0 => Err(TryRecvError::Disconnected),
                None => Err(TryRecvError::Empty),
            }
        }
    }

    impl<T> Drop for Receiver<T> {
        fn drop(&mut self) {
            let mut state = self.0.state.lock().unwrap();
            state.receiver = false;
            let queued = std::mem::take(&mut state.items);
            drop(state);
            // Dropped outside the lock: a queued message may own other channels.
            drop(queued);
        }
    }

    impl<T> fmt::Debug for Receiver<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Receiver { .. }")
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use std::collections::BTreeMap;

    use loom::thread;

    use super::*;
    use crate::nbd::MemoryBackend;

    fn one_disk() -> BTreeMap<String, (MemoryBackend, Option<String>)> {
        let mut exports = BTreeMap::new();
        exports.insert("disk".to_string(), (MemoryBackend::new(512), None));
        exports
    }

    /// Two connection threads write and read back through the owner; the
    /// owner's loop ends when both are done.
    #[test]
    fn calls_from_two_threads_are_answered_in_order() {
        loom::model(|| {
            let (remote, calls) = RemoteExports::channel();
            let clients: Vec<_> = [1u8, 2]
                .into_iter()
                .map(|tag| {
                    let mut exports = remote.clone();
                    thread::spawn(move || {
                        let backend = exports.backend("disk").expect("export exists");
                        let offset = u64::from(tag) * 8;
                        backend.write(offset, &[tag; 4]).unwrap();
                        let mut back = [0; 4];
                        backend.read(offset, &mut back).unwrap();
                        back
                    })
                })
                .collect();
            drop(remote);
            let mut exports = one_disk();
            while let Ok(call) = calls.recv() {
                call.run(&mut exports);
            }
            for (client, tag) in clients.into_iter().zip([1u8, 2]) {
                assert_eq!(client.join().unwrap(), [tag; 4]);
            }
            let bytes = exports["disk"].0.bytes();
            assert_eq!(
                (&bytes[8..12], &bytes[16..20]),
                (&[1u8; 4][..], &[2u8; 4][..])
            );
        });
    }

    /// The owner stops serving while a call may be queued, in flight or not
    /// yet sent: the caller gets "no export", never a hang.
    #[test]
    fn owner_leaving_fails_calls_instead_of_hanging() {
        loom::model(|| {
            let (mut remote, calls) = RemoteExports::channel();
            let client = thread::spawn(move || remote.backend("disk").is_none());
            if let Ok(call) = calls.try_recv() {
                drop(call);
            }
            drop(calls);
            assert!(client.join().unwrap());
        });
    }

    /// A backend obtained before the owner left fails with ESHUTDOWN.
    #[test]
    fn io_after_the_owner_left_is_eshutdown() {
        loom::model(|| {
            let (mut remote, calls) = RemoteExports::channel();
            let client = thread::spawn(move || {
                let backend = remote.backend("disk").expect("served once");
                backend.write(0, &[9]).unwrap_err().raw_os_error()
            });
            let mut exports = one_disk();
            calls.recv().unwrap().run(&mut exports);
            drop(calls);
            assert_eq!(client.join().unwrap(), Some(errno::ESHUTDOWN as i32));
        });
    }
}
