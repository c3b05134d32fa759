//! `--chardev`: QemuOpts syntax (`backend,key=value,...`, `,,` for a
//! comma) for the one kind of character device a QMP daemon needs, a
//! listening unix socket.

/// A `--chardev socket,path=P,server=on[,wait=on|off],id=ID`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChardevSpec {
    /// `id`.
    pub id: String,
    /// `path` of the unix socket.
    pub path: String,
    /// `wait`: block at startup until the first client connects (QEMU's
    /// default for servers).
    pub wait: bool,
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
    "fd",
    "abstract",
    "tight",
    "logfile",
    "logappend",
    "mux",
    "delay",
];

/// Parses a `--chardev` argument; the error is QEMU's text (without the
/// `prog: --chardev ARG: ` prefix).
pub fn parse_chardev(arg: &str) -> Result<ChardevSpec, String> {
    let pairs = split_qemu_opts(arg);
    let mut backend = None;
    let mut id = None;
    let mut path = None;
    let mut server = false;
    let mut wait = true;
    for (i, (key, value)) in pairs.iter().enumerate() {
        match (i, key.as_deref()) {
            (0, None) => backend = Some(value.clone()),
            (_, None) => return Err(format!("Invalid parameter '{value}'")),
            (_, Some("backend")) => backend = Some(value.clone()),
            (_, Some("id")) => id = Some(value.clone()),
            (_, Some("path")) => path = Some(value.clone()),
            (_, Some("server")) => server = parse_bool("server", value)?,
            (_, Some("wait")) => wait = parse_bool("wait", value)?,
            (_, Some(k)) if UNSERVED_SOCKET_KEYS.contains(&k) => {
                return Err(format!("strata-qsd: socket option '{k}' is not supported"))
            }
            (_, Some(k)) => return Err(format!("Invalid parameter '{k}'")),
        }
    }
    let id = id.ok_or("chardev: no id specified")?;
    let backend = backend.unwrap_or_default();
    if backend != "socket" {
        return Err(if KNOWN_BACKENDS.contains(&backend.as_str()) {
            format!("strata-qsd: chardev backend '{backend}' is not supported")
        } else {
            format!("'{backend}' is not a valid char driver name")
        });
    }
    let path = path.ok_or("Unable to parse FD number ")?;
    if !server {
        return Err("strata-qsd: only server=on sockets are supported".to_string());
    }
    Ok(ChardevSpec { id, path, wait })
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
fn split_qemu_opts(arg: &str) -> Vec<(Option<String>, String)> {
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

    #[test]
    fn the_harness_chardev() {
        assert_eq!(
            parse_chardev("socket,path=/tmp/a,,b,server=on,wait=off,id=m0"),
            Ok(ChardevSpec {
                id: "m0".into(),
                path: "/tmp/a,b".into(),
                wait: false
            })
        );
        assert!(parse_chardev("socket,path=p,server=on,id=m").unwrap().wait);
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
        ];
        for (arg, want) in cases {
            assert_eq!(parse_chardev(arg).unwrap_err(), want, "{arg}");
        }
    }
}
