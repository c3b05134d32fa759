//! The daemon: one thread owns the block layer and runs an event loop over
//! the monitor sockets, the QMP clients and the termination signals, and
//! steps the jobs in real time.
//!
//! Each turn of the loop: move the block layer's clock to the real time
//! elapsed since start, step every runnable job (for a bounded slice of
//! time, so that clients stay served), send the events to every
//! negotiated client, then `poll` — without timeout when a job can run,
//! until the next job timer otherwise — and serve what became ready.

use slab::Slab;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata_block::{BlockLayer, HostFiles, Wakeup};
use strata_monitor::{Monitor, MonitorOption, NbdAddress, NbdListener};
use strata_qmp::{
    parse_cli_option, CliOption, CliValue, Command, CommandHandler, Emulator, Event, EventSink,
    QmpError, Session, SessionConfig, Timestamp,
};

use crate::args::{program_name, Plan, Setup};
use crate::chardev::{
    parse_chardev, ChardevBackend, ChardevSpec, SocketAddress, SocketChardev, SocketRole,
};
use crate::exports::LayerExports;
use crate::nbd::{self, Connection, NbdStream, Pump};
use crate::pidfile::PidFile;
use crate::sys::{inherited_socket, os_error_text, poll, Interest, TerminationSignals};

/// How long one turn may step jobs before serving sockets again.
const STEP_SLICE: Duration = Duration::from_millis(10);

/// How long quitting waits for clients to take their last bytes.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// A refused setup: the line to print on stderr (exit 1).
#[derive(Debug)]
pub struct SetupError(pub String);

/// What `error_report_err` prints for a refused option: the description,
/// then the hint on the lines after it.
fn command_line_text(err: QmpError) -> String {
    match err.hint {
        Some(hint) => format!("{}\n{}", err.desc, hint.trim_end_matches('\n')),
        None => err.desc,
    }
}

/// A `--chardev`, until and after a monitor takes it.
struct Chardev {
    spec: ChardevSpec,
    endpoint: Endpoint,
    monitor: Option<MonitorOption>,
}

/// What a chardev is connected to.
enum Endpoint {
    /// A listening socket (`server=on`); `waiting_client` is the client
    /// `wait=on` waited for, until a monitor takes it.
    Listening {
        listener: UnixListener,
        waiting_client: Option<UnixStream>,
    },
    /// One channel from the start (stdio, `server=off`, an inherited
    /// connected `fd`), until a monitor takes it.
    Connected(Option<Channel>),
}

/// Where a QMP client's bytes come from and go to.
enum Channel {
    /// A connected socket; EOF ends the client.
    Socket(UnixStream),
    /// `--chardev stdio`: duplicates of stdin and stdout, left blocking
    /// (O_NONBLOCK would change the file descriptions the daemon shares
    /// with whoever started it): stdin is read once poll says it has
    /// bytes, and output is written whole.
    Stdio { input: Option<File>, output: File },
}

impl Channel {
    fn stdio() -> io::Result<Channel> {
        Ok(Channel::Stdio {
            input: Some(File::from(io::stdin().as_fd().try_clone_to_owned()?)),
            output: File::from(io::stdout().as_fd().try_clone_to_owned()?),
        })
    }

    /// The descriptor to poll for input, while input may come.
    fn input_fd(&self) -> Option<RawFd> {
        match self {
            Channel::Socket(stream) => Some(stream.as_raw_fd()),
            Channel::Stdio { input, .. } => input.as_ref().map(AsRawFd::as_raw_fd),
        }
    }

    fn output_fd(&self) -> RawFd {
        match self {
            Channel::Socket(stream) => stream.as_raw_fd(),
            Channel::Stdio { output, .. } => output.as_raw_fd(),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Channel::Socket(stream) => stream.read(buf),
            Channel::Stdio {
                input: Some(input), ..
            } => input.read(buf),
            Channel::Stdio { input: None, .. } => Ok(0),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Channel::Socket(stream) => stream.write(buf),
            Channel::Stdio { output, .. } => output.write(buf),
        }
    }

    /// What EOF on the input means: a socket client has nothing more to
    /// say (its answers still go out, then it closes); stdio stops
    /// reading but keeps its output, as QEMU's char-fd removes only its
    /// input watch (`fd_chr_read`) and the monitor keeps sending events.
    fn input_ended(&mut self) -> ClientState {
        match self {
            Channel::Socket(_) => ClientState::Closed,
            Channel::Stdio { input, .. } => {
                *input = None;
                ClientState::Open
            }
        }
    }

    /// Blocking writes with a deadline, for the last bytes at exit.
    fn prepare_final_flush(&self, timeout: Duration) {
        if let Channel::Socket(stream) = self {
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_write_timeout(Some(timeout));
        }
    }
}

/// Whether a client is still served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientState {
    Open,
    Closed,
}

/// One QMP client connection.
struct Client {
    channel: Channel,
    session: Session,
    out: Vec<u8>,
    /// The peer shut its side of a socket: what it asked is still
    /// answered (as QEMU does), then the connection closes.
    draining: bool,
    closed: bool,
}

impl Client {
    fn new(channel: Channel, monitor: &MonitorOption, emulator: Emulator) -> io::Result<Client> {
        if let Channel::Socket(stream) = &channel {
            stream.set_nonblocking(true)?;
        }
        let mut session = Session::new(SessionConfig {
            pretty: monitor.pretty,
            emulator,
            ..SessionConfig::default()
        });
        let out = session.take_output();
        Ok(Client {
            channel,
            session,
            out,
            draining: false,
            closed: false,
        })
    }

    fn send_event(&mut self, event: &Event, timestamp: Timestamp) {
        self.session.send_event(event, timestamp);
        self.out.extend(self.session.take_output());
    }

    /// Writes what the channel takes now; a failed channel is closed.
    fn write_some(&mut self) {
        while !self.out.is_empty() && !self.closed {
            match self.channel.write(&self.out) {
                Ok(0) => self.closed = true,
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.closed = true,
            }
        }
        if self.draining && self.out.is_empty() {
            self.closed = true;
        }
    }
}

/// The NBD server's listening socket; what it serves is the monitor's
/// business.
#[derive(Default)]
pub struct NbdSocket {
    listener: Option<nbd::NbdListener>,
}

impl NbdListener for NbdSocket {
    /// Binds the listening socket, with QEMU's error text.
    fn listen(&mut self, addr: &NbdAddress) -> Result<(), QmpError> {
        let (address, shown) = match addr {
            NbdAddress::Unix { path } => (nbd::NbdAddress::Unix(path.into()), path.clone()),
            NbdAddress::Inet { host, port } => {
                let shown = format!("{host}:{port}");
                let resolved = port
                    .parse::<u16>()
                    .ok()
                    .and_then(|port| {
                        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port)).ok()
                    })
                    .and_then(|mut addrs| addrs.next())
                    .ok_or_else(|| {
                        QmpError::generic(format!("address resolution failed for {shown}"))
                    })?;
                (nbd::NbdAddress::Tcp(resolved), shown)
            }
        };
        let listener = nbd::NbdListener::bind(&address).map_err(|e| {
            QmpError::generic(format!(
                "Failed to bind socket to {shown}: {}",
                os_error_text(&e)
            ))
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| QmpError::generic(e.to_string()))?;
        self.listener = Some(listener);
        Ok(())
    }

    fn close(&mut self) {
        if let Some(nbd::NbdListener::Unix(listener)) = &self.listener {
            if let Some(path) = listener
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.to_path_buf()))
            {
                let _ = std::fs::remove_file(path);
            }
        }
        self.listener = None;
    }
}

impl NbdSocket {
    /// The connections waiting on the listening socket.
    fn accept(&mut self) -> Vec<Connection<NbdStream>> {
        let mut accepted = Vec::new();
        let Some(listener) = &self.listener else {
            return accepted;
        };
        while let Ok(stream) = listener.accept() {
            if stream.set_nonblocking(true).is_ok() {
                accepted.push(Connection::new(stream, nbd::SessionConfig::default()));
            }
        }
        accepted
    }
}

/// The running daemon.
pub struct Daemon {
    program: String,
    monitor: Monitor<HostFiles, NbdSocket>,
    /// Keyed by the slab, so that a poll round's owners keep naming the
    /// same connection while others finish and new ones arrive.
    nbd_connections: Slab<Connection<NbdStream>>,
    chardevs: BTreeMap<String, Chardev>,
    /// Keyed like `nbd_connections`.
    clients: Slab<Client>,
    signals: TerminationSignals,
    start: Instant,
    pidfile: Option<PidFile>,
    emulator: Emulator,
}

impl Daemon {
    /// Carries out the setup steps in order (as qsd's option pass does),
    /// then writes the pidfile: the daemon is ready once this returns.
    pub fn start(argv0: &str, plan: Plan) -> Result<Daemon, SetupError> {
        let mut daemon = Daemon::new(argv0, plan.policy, Emulator::StorageDaemon)?;
        for step in &plan.steps {
            if let Err(text) = daemon.setup(step) {
                daemon.remove_files();
                return Err(SetupError(daemon.option_error(step, &text)));
            }
        }
        if let Some(path) = &plan.pidfile {
            let pidfile = PidFile::write(path).map_err(|e| {
                daemon.remove_files();
                SetupError(format!(
                    "{}: cannot create PID file: {}",
                    daemon.program, e.0
                ))
            })?;
            daemon.pidfile = Some(pidfile);
        }
        Ok(daemon)
    }

    /// A daemon with nothing set up yet, whose QMP clients are served as
    /// `emulator`'s: the start of [`Daemon::start`], and of a qemu-system
    /// stand-in that carries out its own command line with
    /// [`Daemon::setup`] and [`Daemon::monitor_mut`].
    pub fn new(
        argv0: &str,
        policy: Option<&'static strata_block::policy::Policy>,
        emulator: Emulator,
    ) -> Result<Daemon, SetupError> {
        let program = program_name(argv0).to_string();
        let signals = TerminationSignals::install()
            .map_err(|e| SetupError(format!("{program}: signalfd: {e}")))?;
        let mut layer = BlockLayer::new(HostFiles::new(), seed());
        if let Some(policy) = policy {
            layer.set_policy(policy);
        }
        let mut monitor = Monitor::with_listener(layer, NbdSocket::default());
        let start = Instant::now();
        monitor.set_clock_origin(wall_clock());
        monitor.set_allocated_size_probe(allocated_size);
        Ok(Daemon {
            program,
            monitor,
            nbd_connections: Slab::new(),
            chardevs: BTreeMap::new(),
            clients: Slab::new(),
            signals,
            start,
            pidfile: None,
            emulator,
        })
    }

    /// The monitor, for setup steps of the caller's own.
    pub fn monitor_mut(&mut self) -> &mut Monitor<HostFiles, NbdSocket> {
        &mut self.monitor
    }

    /// Undoes what a failed start-up left on the file system (listening
    /// sockets' files).
    pub fn abort_setup(mut self) {
        self.remove_files();
    }

    fn option_error(&self, step: &Setup, text: &str) -> String {
        let (option, arg) = match step {
            Setup::Chardev(a) => ("--chardev", a),
            Setup::Monitor(a) => ("--monitor", a),
            Setup::Blockdev(a) => ("--blockdev", a),
            Setup::Object(a) => ("--object", a),
            Setup::NbdServer(a) => ("--nbd-server", a),
            Setup::Export(a) => ("--export", a),
        };
        format!("{}: {option} {arg}: {text}", self.program)
    }

    /// Carries out one setup step; the error is QEMU's text, without the
    /// program and option prefix.
    pub fn setup(&mut self, step: &Setup) -> Result<(), String> {
        match step {
            Setup::Chardev(arg) => self.add_chardev(parse_chardev(arg)?),
            Setup::Monitor(arg) => {
                let CliValue::Monitor(value) = parse_cli_option(CliOption::Monitor, arg)? else {
                    unreachable!("--monitor parses to a monitor")
                };
                self.add_monitor(MonitorOption::from_json(&value))
            }
            Setup::Blockdev(arg) => match parse_cli_option(CliOption::Blockdev, arg)? {
                CliValue::Blockdev(options) => self.run(Command::BlockdevAdd(options)),
                other => unreachable!("--blockdev parsed to {other:?}"),
            },
            Setup::Object(arg) => match parse_cli_option(CliOption::Object, arg)? {
                CliValue::Object(object) => self.run(Command::ObjectAdd(object)),
                CliValue::Help => {
                    println!("List of user creatable objects:\n  iothread\n  throttle-group");
                    std::process::exit(0);
                }
                other => unreachable!("--object parsed to {other:?}"),
            },
            Setup::NbdServer(arg) => match parse_cli_option(CliOption::NbdServer, arg)? {
                CliValue::NbdServer(value) => {
                    let addr = NbdAddress::from_nbd_server_option(&value).map_err(|e| e.desc)?;
                    let tls_creds = value.get("tls-creds").and_then(|v| v.as_str());
                    self.monitor
                        .nbd_server_start(addr, tls_creds)
                        .map_err(|e| e.desc)
                }
                other => unreachable!("--nbd-server parsed to {other:?}"),
            },
            Setup::Export(arg) => match parse_cli_option(CliOption::Export, arg)? {
                CliValue::Export(options) => self.run(Command::BlockExportAdd(options)),
                other => unreachable!("--export parsed to {other:?}"),
            },
        }
    }

    /// Runs a command from the command line (no client sees its events).
    fn run(&mut self, command: Command) -> Result<(), String> {
        let mut sink = EventSink::default();
        self.monitor
            .dispatch(command, &mut sink)
            .map(drop)
            .map_err(command_line_text)?;
        self.monitor.take_command_events();
        Ok(())
    }

    fn add_chardev(&mut self, spec: ChardevSpec) -> Result<(), String> {
        if self.chardevs.contains_key(&spec.id) {
            return Err("duplicate yank instance".to_string());
        }
        let endpoint = match &spec.backend {
            ChardevBackend::Stdio => {
                // qemu_chr_open_stdio: stdio is one device's.
                if self
                    .chardevs
                    .values()
                    .any(|c| c.spec.backend == ChardevBackend::Stdio)
                {
                    return Err("cannot use stdio by multiple character devices".to_string());
                }
                Endpoint::Connected(Some(Channel::stdio().map_err(|e| e.to_string())?))
            }
            ChardevBackend::Socket(socket) => self.open_socket(socket)?,
        };
        self.chardevs.insert(
            spec.id.clone(),
            Chardev {
                spec,
                endpoint,
                monitor: None,
            },
        );
        Ok(())
    }

    /// `qmp_chardev_open_socket`: listen (and maybe wait for the first
    /// client), or connect now.
    fn open_socket(&self, socket: &SocketChardev) -> Result<Endpoint, String> {
        match socket.role {
            SocketRole::Server { wait } => {
                let listener = listen(&socket.address)?;
                let mut waiting_client = None;
                if wait {
                    eprintln!(
                        "{}: --chardev: info: QEMU waiting for connection on: disconnected:{},server=on",
                        self.program,
                        address_label(&socket.address)
                    );
                    let (stream, _) = listener.accept().map_err(|e| e.to_string())?;
                    waiting_client = Some(stream);
                }
                listener.set_nonblocking(true).map_err(|e| e.to_string())?;
                Ok(Endpoint::Listening {
                    listener,
                    waiting_client,
                })
            }
            SocketRole::Client => {
                let stream = connect(&socket.address)?;
                Ok(Endpoint::Connected(Some(Channel::Socket(stream))))
            }
        }
    }

    fn add_monitor(&mut self, monitor: MonitorOption) -> Result<(), String> {
        let chardev = self
            .chardevs
            .get_mut(&monitor.chardev)
            .ok_or_else(|| format!("chardev \"{}\" not found", monitor.chardev))?;
        if chardev.monitor.is_some() {
            return Err(format!("Device '{}' is in use", monitor.chardev));
        }
        if !monitor.control {
            return Err("strata-qsd: only QMP monitors (mode=control) are supported".into());
        }
        let channel = match &mut chardev.endpoint {
            Endpoint::Listening { waiting_client, .. } => {
                waiting_client.take().map(Channel::Socket)
            }
            Endpoint::Connected(channel) => channel.take(),
        };
        if let Some(channel) = channel {
            let client =
                Client::new(channel, &monitor, self.emulator).map_err(|e| e.to_string())?;
            self.clients.insert(client);
        }
        chardev.monitor = Some(monitor);
        Ok(())
    }

    /// Serves until `quit` or a termination signal; returns the exit code.
    pub fn run_loop(mut self) -> i32 {
        loop {
            self.step_jobs();
            let events = self.monitor.take_events();
            self.broadcast(events);
            for (_, client) in &mut self.clients {
                client.write_some();
            }
            self.clients.retain(|_, c| !c.closed);
            let timeout = self.poll_timeout();
            let (interests, owners) = self.interests();
            let ready = match poll(&interests, timeout) {
                Ok(ready) => ready,
                Err(e) => {
                    eprintln!("{}: poll: {e}", self.program);
                    return self.shutdown(1);
                }
            };
            let mut quit = false;
            for (ready, owner) in ready.into_iter().zip(owners) {
                if !(ready.readable || ready.writable || ready.closed) {
                    continue;
                }
                match owner {
                    Owner::Signals => {
                        if self.signals.take().is_some() {
                            return self.shutdown(0);
                        }
                    }
                    Owner::Listener(id) => self.accept(&id),
                    Owner::Client(index) => {
                        if ready.readable || ready.closed {
                            quit |= self.read_client(index);
                        }
                        self.clients[index].write_some();
                    }
                    Owner::ClientOutput(index) => {
                        if ready.closed {
                            self.clients[index].closed = true;
                        }
                        self.clients[index].write_some();
                    }
                    Owner::NbdListener => {
                        for connection in self.monitor.listener_mut().accept() {
                            self.nbd_connections.insert(connection);
                        }
                    }
                    Owner::Nbd(key) => {
                        if !self.pump_nbd(key) {
                            self.nbd_connections.remove(key);
                        }
                    }
                }
            }
            if self.monitor.nbd_server().is_none() {
                // nbd-server-stop closed the server: its clients go too.
                self.nbd_connections.clear();
            }
            if quit {
                return self.shutdown(0);
            }
            self.clients.retain(|_, c| !c.closed);
        }
    }

    /// Serves NBD connection `index`; false once it finished or failed.
    fn pump_nbd(&mut self, index: usize) -> bool {
        let now = self.now_ns();
        self.monitor.layer_mut().advance_to(now);
        let mut exports = LayerExports::new(&mut self.monitor);
        let connection = &mut self.nbd_connections[index];
        match connection.pump(&mut exports) {
            Ok(Pump::Open) => true,
            Ok(Pump::Finished(_)) | Err(_) => {
                let _ = connection.stream().shutdown();
                false
            }
        }
    }

    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Steps what the main loop lists first while it is a job, at real
    /// time, for at most [`STEP_SLICE`]; then the monitor's turn comes.
    fn step_jobs(&mut self) {
        let slice_end = Instant::now() + STEP_SLICE;
        let start = self.start;
        let stepped = self
            .monitor
            .layer_mut()
            .run_jobs(&mut || start.elapsed().as_nanos() as u64, &mut || {
                Instant::now() < slice_end
            });
        if let Err(e) = stepped {
            eprintln!("{}: job step: {e}", self.program);
        }
    }

    /// No wait while a job can run; until the next job timer otherwise.
    fn poll_timeout(&mut self) -> Option<i32> {
        let now = self.now_ns();
        let layer = self.monitor.layer_mut();
        layer.advance_to(now);
        match layer.next_wakeup() {
            Wakeup::Now => Some(0),
            Wakeup::Timer(t) => {
                // At least 1 ms: a timer that is due without making a job
                // runnable must not turn the loop into a busy wait.
                let ms = t.saturating_sub(now).div_ceil(1_000_000).max(1);
                Some(ms.min(i32::MAX as u64) as i32)
            }
            Wakeup::Monitor => None,
        }
    }

    fn interests(&self) -> (Vec<Interest>, Vec<Owner>) {
        let mut interests = vec![Interest {
            fd: self.signals.as_raw_fd(),
            readable: true,
            writable: false,
        }];
        let mut owners = vec![Owner::Signals];
        for (id, chardev) in &self.chardevs {
            if let (Some(_), Endpoint::Listening { listener, .. }) =
                (&chardev.monitor, &chardev.endpoint)
            {
                interests.push(Interest {
                    fd: listener.as_raw_fd(),
                    readable: true,
                    writable: false,
                });
                owners.push(Owner::Listener(id.clone()));
            }
        }
        for (index, client) in &self.clients {
            let input = client.channel.input_fd().filter(|_| !client.draining);
            let output = client.channel.output_fd();
            let writable = !client.out.is_empty();
            if let Some(fd) = input {
                interests.push(Interest {
                    fd,
                    readable: true,
                    writable: writable && fd == output,
                });
                owners.push(Owner::Client(index));
            }
            if writable && input != Some(output) {
                interests.push(Interest {
                    fd: output,
                    readable: false,
                    writable: true,
                });
                owners.push(Owner::ClientOutput(index));
            }
        }
        if let Some(listener) = &self.monitor.listener().listener {
            interests.push(Interest {
                fd: listener.as_raw_fd(),
                readable: true,
                writable: false,
            });
            owners.push(Owner::NbdListener);
        }
        for (index, connection) in &self.nbd_connections {
            interests.push(Interest {
                fd: connection.stream().as_raw_fd(),
                readable: connection.wants_read(),
                writable: connection.wants_write(),
            });
            owners.push(Owner::Nbd(index));
        }
        (interests, owners)
    }

    fn accept(&mut self, chardev_id: &str) {
        let Some(chardev) = self.chardevs.get(chardev_id) else {
            return;
        };
        let (Some(monitor), Endpoint::Listening { listener, .. }) =
            (chardev.monitor.clone(), &chardev.endpoint)
        else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    match Client::new(Channel::Socket(stream), &monitor, self.emulator) {
                        Ok(client) => {
                            self.clients.insert(client);
                        }
                        Err(e) => eprintln!("{}: {}: {e}", self.program, chardev.spec.id),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Reads and answers what client `index` sent; true once it asked to
    /// quit.
    fn read_client(&mut self, index: usize) -> bool {
        let mut buf = [0u8; 65536];
        let client = &mut self.clients[index];
        let n = match client.channel.read(&mut buf) {
            Ok(0) => {
                client.draining = client.channel.input_ended() == ClientState::Closed;
                return false;
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return false
            }
            Err(_) => {
                self.clients[index].closed = true;
                return false;
            }
        };
        let now = self.now_ns();
        self.monitor.layer_mut().advance_to(now);
        let client = &mut self.clients[index];
        client.session.feed(&buf[..n], &mut self.monitor);
        client.out.extend(client.session.take_output());
        let quit = client.session.quit_requested();
        let events = self.monitor.take_command_events();
        for (other, client) in &mut self.clients {
            if other != index {
                for (event, timestamp) in &events {
                    client.send_event(event, *timestamp);
                }
            }
        }
        quit
    }

    fn broadcast(&mut self, events: Vec<(Event, Timestamp)>) {
        for (event, timestamp) in &events {
            for (_, client) in &mut self.clients {
                client.send_event(event, *timestamp);
            }
        }
    }

    /// `quit` / SIGTERM: jobs are cancelled (after `quit` none is left),
    /// their events and the answers go out, the exports and the socket and
    /// pid files go away.
    fn shutdown(mut self, code: i32) -> i32 {
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        // After `quit` this finds nothing left to do; after a signal its
        // events go to every client.
        if let Err(e) = self.monitor.shutdown() {
            eprintln!("{}: cancelling jobs: {e}", self.program);
        }
        let events = self.monitor.take_events();
        self.broadcast(events);
        for (_, client) in &mut self.clients {
            client.channel.prepare_final_flush(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            );
            client.write_some();
        }
        self.nbd_connections.clear();
        self.monitor.listener_mut().close();
        if let Err(e) = self.monitor.layer_mut().core_mut().files_mut().flush_all() {
            eprintln!("{}: flush: {e}", self.program);
        }
        self.remove_files();
        code
    }

    fn remove_files(&mut self) {
        for chardev in self.chardevs.values() {
            if let (ChardevBackend::Socket(socket), Endpoint::Listening { .. }) =
                (&chardev.spec.backend, &chardev.endpoint)
            {
                if let SocketAddress::Path(path) = &socket.address {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        if let Some(pidfile) = &self.pidfile {
            pidfile.remove();
        }
    }
}

/// Who a polled descriptor belongs to.
enum Owner {
    Signals,
    Listener(String),
    Client(usize),
    /// A client's output, when it is not its input's descriptor (stdio).
    ClientOutput(usize),
    NbdListener,
    Nbd(usize),
}

/// A listening socket at `address`: a path (a stale socket file goes
/// first, as in `unix_listen_saddr`) or an inherited descriptor.
fn listen(address: &SocketAddress) -> Result<UnixListener, String> {
    match address {
        SocketAddress::Path(path) => {
            let _ = std::fs::remove_file(path);
            UnixListener::bind(path)
                .map_err(|e| format!("Failed to bind socket to {path}: {}", os_error_text(&e)))
        }
        SocketAddress::Fd(fd) => inherited_socket(*fd).map(UnixListener::from),
    }
}

/// A connected socket at `address`: connect to a path (`unix_connect_saddr`)
/// or take an inherited descriptor.
fn connect(address: &SocketAddress) -> Result<UnixStream, String> {
    match address {
        SocketAddress::Path(path) => UnixStream::connect(path)
            .map_err(|e| format!("Failed to connect to '{path}': {}", os_error_text(&e))),
        SocketAddress::Fd(fd) => inherited_socket(*fd).map(UnixStream::from),
    }
}

/// How `qemu_chr_socket_address`'s label names an address.
fn address_label(address: &SocketAddress) -> String {
    match address {
        SocketAddress::Path(path) => format!("unix:{path}"),
        SocketAddress::Fd(fd) => format!("fd:{fd}"),
    }
}

fn wall_clock() -> Timestamp {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: since_epoch.as_secs() as i64,
        microseconds: since_epoch.subsec_micros() as i64,
    }
}

/// `raw_co_get_allocated_file_size`: the blocks a file takes on disk.
fn allocated_size(path: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.blocks() * 512)
}

/// The seed of generated node names (`#blockNNN`): QEMU's are random too.
fn seed() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    since_epoch.as_nanos() as u64 ^ u64::from(std::process::id())
}
