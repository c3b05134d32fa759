//! `--chardev`: QemuOpts syntax (`backend,key=value,...`, `,,` for a
//! comma) for the character devices a QMP daemon needs: `stdio`, and unix
//! `socket`s that listen (`server=on`), connect (`server=off`, QEMU's
//! default) or come inherited (`fd=N`).

use std::os::fd::RawFd;

/// A `--chardev` option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChardevSpec {
    /// `id`.
    pub id: String,
    /// What the character device is.
    pub backend: ChardevBackend,
}

/// The backends strata-qsd serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChardevBackend {
    /// `stdio`: input from stdin, output to stdout.
    Stdio,
    /// `socket` on a unix socket.
    Socket(SocketChardev),
}

/// A `socket` chardev's address and role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketChardev {
    /// `path` or `fd`.
    pub address: SocketAddress,
    /// `server`.
    pub role: SocketRole,
}

/// Where a `socket` chardev's socket is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketAddress {
    /// `path`: a unix socket path.
    Path(String),
    /// `fd`: a socket descriptor the daemon inherited.
    Fd(RawFd),
}

/// `server=on|off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketRole {
    /// `server=on`: listen; `wait` (the default) blocks the start-up until
    /// the first client connects.
    Server {
        /// `wait`.
        wait: bool,
    },
    /// `server=off` (the default): connect at start-up.
    Client,
}

/// The keys QEMU's `socket` chardev knows but strata-qsd does not serve.
const UNSERVED_SOCKET_KEYS: &[&str] = &[
    "host",
    "port",
    "to",
    "ipv4",
    "ipv6",
    "nodelay",
    "telnet",
    "tn3270",
    "websocket",
    "reconnect",
    "reconnect-ms",
    "tls-creds",
    "tls-authz",
    "abstract",
    "tight",
    "logfile",
    "logappend",
    "mux",
    "delay",
];

/// The options as given, before the backend is known (QemuOpts checks
/// every key and boolean against `qemu_chardev_opts` first).
#[derive(Default)]
struct RawOpts {
    backend: Option<String>,
    id: Option<String>,
    path: Option<String>,
    fd: Option<String>,
    server: Option<bool>,
    wait: Option<bool>,
    unserved: Option<String>,
}

/// Parses a `--chardev` argument; the error is QEMU's text (without the
/// `prog: --chardev ARG: ` prefix).
pub fn parse_chardev(arg: &str) -> Result<ChardevSpec, String> {
    let opts = read_opts(arg)?;
    let id = opts.id.clone().ok_or("chardev: no id specified")?;
    let backend = match opts.backend.as_deref().unwrap_or_default() {
        "socket" => ChardevBackend::Socket(socket_backend(&opts)?),
        // `qemu_chr_parse_stdio` only reads `signal`, which a daemon
        // without a terminal has no use for.
        "stdio" => ChardevBackend::Stdio,
        known if KNOWN_BACKENDS.contains(&known) => {
            return Err(format!(
                "strata-qsd: chardev backend '{known}' is not supported"
            ))
        }
        other => return Err(format!("'{other}' is not a valid char driver name")),
    };
    Ok(ChardevSpec { id, backend })
}

fn read_opts(arg: &str) -> Result<RawOpts, String> {
    let mut opts = RawOpts::default();
    for (i, (key, value)) in split_qemu_opts(arg).into_iter().enumerate() {
        match (i, key.as_deref()) {
            (0, None) => opts.backend = Some(value),
            (_, None) => return Err(format!("Invalid parameter '{value}'")),
            (_, Some("backend")) => opts.backend = Some(value),
            (_, Some("id")) => opts.id = Some(value),
            (_, Some("path")) => opts.path = Some(value),
            (_, Some("fd")) => opts.fd = Some(value),
            (_, Some("server")) => opts.server = Some(parse_bool("server", &value)?),
            (_, Some("wait")) => opts.wait = Some(parse_bool("wait", &value)?),
            (_, Some("signal")) => {
                parse_bool("signal", &value)?;
            }
            (_, Some(k)) if UNSERVED_SOCKET_KEYS.contains(&k) => {
                opts.unserved.get_or_insert_with(|| k.to_string());
            }
            (_, Some(k)) => return Err(format!("Invalid parameter '{k}'")),
        }
    }
    Ok(opts)
}

/// `qemu_chr_parse_socket`'s checks, in its order.
fn socket_backend(opts: &RawOpts) -> Result<SocketChardev, String> {
    if let Some(key) = &opts.unserved {
        return Err(format!(
            "strata-qsd: socket option '{key}' is not supported"
        ));
    }
    if opts.path.is_some() && opts.fd.is_some() {
        return Err("None or one of 'path', 'fd' or 'host' option required.".to_string());
    }
    let role = match (opts.server.unwrap_or(false), opts.wait) {
        (true, wait) => SocketRole::Server {
            wait: wait.unwrap_or(true),
        },
        (false, Some(_)) => {
            return Err(
                "'wait' option is incompatible with socket in client connect mode".to_string(),
            )
        }
        (false, None) => SocketRole::Client,
    };
    let address = match (&opts.path, &opts.fd) {
        (Some(path), _) => SocketAddress::Path(path.clone()),
        (None, fd) => {
            // Any number parses (socket_get_fd's check refuses what is
            // not a socket, -1 included).
            let fd = fd.as_deref().unwrap_or_default();
            let number = fd
                .parse::<RawFd>()
                .map_err(|_| format!("Unable to parse FD number {fd}"))?;
            SocketAddress::Fd(number)
        }
    };
    Ok(SocketChardev { address, role })
}

const KNOWN_BACKENDS: &[&str] = &[
    "file",
    "pipe",
    "pty",
    "null",
    "serial",
    "parallel",
    "stdio",
    "udp",
    "ringbuf",
    "memory",
    "mux",
    "msmouse",
    "wctablet",
    "braille",
    "testdev",
    "spicevmc",
    "spiceport",
    "qemu-vdagent",
    "dbus",
    "vc",
];

/// `qapi_bool_parse`.
fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "on" | "yes" | "true" | "y" => Ok(true),
        "off" | "no" | "false" | "n" => Ok(false),
        _ => Err(format!("Parameter '{key}' expects 'on' or 'off'")),
    }
}

/// `key=value` pairs; a bare first word has no key (the implied one).
/// `,,` stands for a literal comma.
pub fn split_qemu_opts(arg: &str) -> Vec<(Option<String>, String)> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                current.push(',');
            } else {
                parts.push(std::mem::take(&mut current));
            }
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (Some(k.to_string()), v.to_string()),
            None => (None, p),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(address: SocketAddress, role: SocketRole) -> ChardevBackend {
        ChardevBackend::Socket(SocketChardev { address, role })
    }

    #[test]
    fn sockets_listen_connect_or_are_inherited() {
        let cases = [
            (
                "socket,path=/tmp/a,,b,server=on,wait=off,id=m0",
                socket(
                    SocketAddress::Path("/tmp/a,b".into()),
                    SocketRole::Server { wait: false },
                ),
            ),
            (
                "socket,path=p,server=on,id=m0",
                socket(
                    SocketAddress::Path("p".into()),
                    SocketRole::Server { wait: true },
                ),
            ),
            // iotests' QemuStorageDaemon: the daemon connects to the test.
            (
                "socket,id=m0,path=q.sock",
                socket(SocketAddress::Path("q.sock".into()), SocketRole::Client),
            ),
            (
                "socket,id=m0,fd=5",
                socket(SocketAddress::Fd(5), SocketRole::Client),
            ),
            ("stdio,id=m0", ChardevBackend::Stdio),
            ("stdio,id=m0,signal=off,path=ignored", ChardevBackend::Stdio),
        ];
        for (arg, backend) in cases {
            assert_eq!(
                parse_chardev(arg),
                Ok(ChardevSpec {
                    id: "m0".into(),
                    backend
                }),
                "{arg}"
            );
        }
    }

    /// Texts from qemu-storage-daemon 10.0.2.
    #[test]
    fn qsd_errors() {
        let cases = [
            (
                "socket,path=/tmp/q/s2,server=on,wait=off",
                "chardev: no id specified",
            ),
            (
                "socket,path=/tmp/q/s2,server=on,wait=off,id=m0,bogus=1",
                "Invalid parameter 'bogus'",
            ),
            ("nosuch,id=m0", "'nosuch' is not a valid char driver name"),
            ("socket,id=m0", "Unable to parse FD number "),
            ("socket,id=s,fd=abc", "Unable to parse FD number abc"),
            (
                "socket,id=s,path=/tmp/x,fd=3",
                "None or one of 'path', 'fd' or 'host' option required.",
            ),
            ("stdio", "chardev: no id specified"),
            (
                "socket,id=s,fd=x,wait=on",
                "'wait' option is incompatible with socket in client connect mode",
            ),
            ("stdio,id=s,bogus=1", "Invalid parameter 'bogus'"),
            (
                "stdio,id=s,signal=maybe",
                "Parameter 'signal' expects 'on' or 'off'",
            ),
        ];
        for (arg, want) in cases {
            assert_eq!(parse_chardev(arg).unwrap_err(), want, "{arg}");
        }
    }
}
