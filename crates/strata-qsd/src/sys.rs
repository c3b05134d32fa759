//! The few system calls std does not wrap: `poll(2)`, and termination
//! signals delivered through a `signalfd(2)` so that the event loop sees
//! them like any other readable descriptor (no signal handler, no state
//! shared with one).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Readiness interest for [`poll`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest {
    /// The descriptor.
    pub fd: RawFd,
    /// Wake when there is something to read (or a connection to accept).
    pub readable: bool,
    /// Wake when there is room to write.
    pub writable: bool,
}

/// What [`poll`] found for one descriptor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// Data (or a connection) to read.
    pub readable: bool,
    /// Room to write.
    pub writable: bool,
    /// Hung up or failed: reading will say how.
    pub closed: bool,
}

/// Waits until one of `interests` is ready or `timeout_ms` passed
/// (`None`: no timeout).  An interrupted wait reports nothing ready.
pub fn poll(interests: &[Interest], timeout_ms: Option<i32>) -> io::Result<Vec<Ready>> {
    let mut fds: Vec<libc::pollfd> = interests
        .iter()
        .map(|i| libc::pollfd {
            fd: i.fd,
            events: if i.readable { libc::POLLIN } else { 0 }
                | if i.writable { libc::POLLOUT } else { 0 },
            revents: 0,
        })
        .collect();
    // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()`
    // pollfd structures for the duration of the call.
    let n = unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            timeout_ms.unwrap_or(-1),
        )
    };
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok(fds
        .iter()
        .map(|p| Ready {
            readable: p.revents & libc::POLLIN != 0,
            writable: p.revents & libc::POLLOUT != 0,
            closed: p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0,
        })
        .collect())
}

/// Takes over descriptor `fd`, inherited from whoever started the daemon,
/// if it is a socket (`socket_get_fd`'s check); QEMU's text otherwise.
pub fn inherited_socket(fd: RawFd) -> Result<OwnedFd, String> {
    // SAFETY: fstat only writes into the zeroed stat buffer; a closed or
    // invalid descriptor (negative ones included) makes it fail, and
    // nothing is taken then.
    let is_socket = unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut stat) == 0 && stat.st_mode & libc::S_IFMT == libc::S_IFSOCK
    };
    if !is_socket {
        return Err(format!("File descriptor '{fd}' is not a socket"));
    }
    // SAFETY: the descriptor is open (fstat succeeded) and the command line
    // handed it to the daemon: nothing else in the process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// SIGTERM, SIGINT and SIGHUP, blocked and readable from a descriptor.
#[derive(Debug)]
pub struct TerminationSignals {
    fd: OwnedFd,
}

impl TerminationSignals {
    /// Blocks the signals for this thread (call before spawning any
    /// thread, which inherits the mask) and opens the descriptor.
    pub fn install() -> io::Result<TerminationSignals> {
        // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise
        // it; sigprocmask and signalfd only read it.  The returned
        // descriptor is checked and then owned by OwnedFd alone.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
                libc::sigaddset(&mut set, signal);
            }
            if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(TerminationSignals {
                fd: OwnedFd::from_raw_fd(fd),
            })
        }
    }

    /// The signal number received, if one is pending.
    pub fn take(&self) -> Option<i32> {
        // SAFETY: signalfd_siginfo is plain data; read writes at most its
        // size into it.
        unsafe {
            let mut info: libc::signalfd_siginfo = std::mem::zeroed();
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            let n = libc::read(
                self.fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size,
            );
            (n == size as isize).then_some(info.ssi_signo as i32)
        }
    }
}

impl AsRawFd for TerminationSignals {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// An OS error as QEMU prints it: `strerror`'s text alone.
pub fn os_error_text(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}
