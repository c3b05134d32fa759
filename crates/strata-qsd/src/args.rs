//! qemu-storage-daemon's command line: `getopt_long` with the optstring
//! `-hT:V` (so a non-option argument is an error, in order) and QEMU's
//! texts for every refusal.
//!
//! Parsing only splits the command line into [`Setup`] steps; the daemon
//! carries them out in order, as qsd's second option pass does, so that
//! `--monitor` finds the `--chardev` before it and `--export` the
//! `--blockdev`.

use std::fmt;

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// `-h` / `--help`: print [`usage`] and exit 0.
    Help,
    /// `-V` / `--version`: print [`version`] and exit 0.
    Version,
    /// Run the daemon.
    Run(Plan),
}

/// The setup steps of a daemon run, in command-line order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The steps, in order.
    pub steps: Vec<Setup>,
    /// `--pidfile`: written once everything is set up.
    pub pidfile: Option<String>,
    /// `--strata-policy NAME` (Strata's own option, a name QEMU's options
    /// cannot clash with): the block layer's policy instead of QEMU 10.0's.
    pub policy: Option<&'static strata_block::policy::Policy>,
}

/// One option that sets something up, with its raw argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setup {
    /// `--chardev`.
    Chardev(String),
    /// `--monitor`.
    Monitor(String),
    /// `--blockdev`.
    Blockdev(String),
    /// `--object`.
    Object(String),
    /// `--nbd-server`.
    NbdServer(String),
    /// `--export`.
    Export(String),
}

/// A refused command line: print [`ArgError::line`] on stderr, exit 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgError {
    line: String,
}

impl ArgError {
    /// The whole line, program name included, as qsd prints it.
    pub fn line(&self) -> &str {
        &self.line
    }
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}

impl std::error::Error for ArgError {}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Long {
    Blockdev,
    Chardev,
    Daemonize,
    Export,
    Help,
    Monitor,
    NbdServer,
    Object,
    Pidfile,
    StrataPolicy,
    Trace,
    Version,
}

/// qsd's `long_options`, in its order (prefix matching walks this list).
const LONG_OPTIONS: &[(&str, Long, bool)] = &[
    ("blockdev", Long::Blockdev, true),
    ("chardev", Long::Chardev, true),
    ("daemonize", Long::Daemonize, false),
    ("export", Long::Export, true),
    ("help", Long::Help, false),
    ("monitor", Long::Monitor, true),
    ("nbd-server", Long::NbdServer, true),
    ("object", Long::Object, true),
    ("pidfile", Long::Pidfile, true),
    ("strata-policy", Long::StrataPolicy, true),
    ("trace", Long::Trace, true),
    ("version", Long::Version, false),
];

/// Parses `args` (without the program name); `argv0` is the program name
/// as invoked, which getopt's messages start with.
pub fn parse(argv0: &str, args: &[String]) -> Result<Invocation, ArgError> {
    let fail = |text: String| ArgError {
        line: format!("{argv0}: {text}"),
    };
    let mut plan = Plan::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let (option, value) =
            if let Some(long) = arg.strip_prefix("--") {
                if long.is_empty() {
                    // "--" ends the options; what follows is still unexpected.
                    if let Some(rest) = args.get(i) {
                        return Err(fail(format!("{rest}: Unexpected argument")));
                    }
                    break;
                }
                let (name, inline) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (long, None),
                };
                let (full, option, takes_arg) =
                    find_long(name).ok_or_else(|| fail(format!("unrecognized option '{arg}'")))?;
                let value = match (takes_arg, inline) {
                    (true, Some(v)) => Some(v),
                    (true, None) => {
                        let v = args.get(i).cloned().ok_or_else(|| {
                            fail(format!("option '--{full}' requires an argument"))
                        })?;
                        i += 1;
                        Some(v)
                    }
                    (false, Some(_)) => {
                        return Err(fail(format!("option '--{full}' doesn't allow an argument")))
                    }
                    (false, None) => None,
                };
                (option, value)
            } else if let Some(shorts) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
                let c = shorts.chars().next().expect("not empty");
                let option = match c {
                    'h' => Long::Help,
                    'V' => Long::Version,
                    'T' => Long::Trace,
                    other => return Err(fail(format!("invalid option -- '{other}'"))),
                };
                let rest = &shorts[c.len_utf8()..];
                if option == Long::Trace {
                    let value = if rest.is_empty() {
                        let v = args.get(i).cloned().ok_or_else(|| {
                            fail("option requires an argument -- 'T'".to_string())
                        })?;
                        i += 1;
                        v
                    } else {
                        rest.to_string()
                    };
                    (option, Some(value))
                } else {
                    (option, None)
                }
            } else {
                return Err(ArgError {
                    line: format!("{}: {arg}: Unexpected argument", program_name(argv0)),
                });
            };
        let value = value.unwrap_or_default();
        match option {
            Long::Help => return Ok(Invocation::Help),
            Long::Version => return Ok(Invocation::Version),
            Long::Blockdev => plan.steps.push(Setup::Blockdev(value)),
            Long::Chardev => plan.steps.push(Setup::Chardev(value)),
            Long::Export => plan.steps.push(Setup::Export(value)),
            Long::Monitor => plan.steps.push(Setup::Monitor(value)),
            Long::NbdServer => plan.steps.push(Setup::NbdServer(value)),
            Long::Object => plan.steps.push(Setup::Object(value)),
            Long::Pidfile => plan.pidfile = Some(value),
            Long::StrataPolicy => {
                let policy = strata_block::policy::by_name(&value).ok_or_else(|| ArgError {
                    line: format!(
                        "{}: --strata-policy: unknown policy '{value}' (known: {})",
                        program_name(argv0),
                        strata_block::policy::names().join(", ")
                    ),
                })?;
                plan.policy = Some(policy);
            }
            Long::Daemonize | Long::Trace => {
                return Err(ArgError {
                    line: format!(
                        "{}: {}: not supported by strata-qsd",
                        program_name(argv0),
                        arg
                    ),
                })
            }
        }
    }
    Ok(Invocation::Run(plan))
}

/// getopt_long's lookup: an exact name, else the only option the text is
/// a prefix of.
fn find_long(name: &str) -> Option<(&'static str, Long, bool)> {
    if let Some(&exact) = LONG_OPTIONS.iter().find(|(n, ..)| *n == name) {
        return Some(exact);
    }
    let mut matches = LONG_OPTIONS.iter().filter(|(n, ..)| n.starts_with(name));
    match (matches.next(), matches.next()) {
        (Some(&only), None) => Some(only),
        _ => None,
    }
}

/// The program name QEMU's `error_report` prefixes: the basename of `argv[0]`.
pub fn program_name(argv0: &str) -> &str {
    argv0.rsplit('/').next().unwrap_or(argv0)
}

/// `--help`: qsd's usage text for the options strata-qsd serves.
pub fn usage(program: &str) -> String {
    format!(
        "Usage: {program} [options]
QEMU storage daemon (Strata)

  -h, --help             display this help and exit
  -V, --version          output version information and exit

  --blockdev [driver=]<driver>[,node-name=<N>][,discard=ignore|unmap]
             [,cache.direct=on|off][,cache.no-flush=on|off]
             [,read-only=on|off][,auto-read-only=on|off]
             [,force-share=on|off][,detect-zeroes=on|off|unmap]
             [,driver specific parameters...]
                         configure a block backend

  --chardev socket,id=<id>,path=<path>[,server=on|off][,wait=on|off]
  --chardev socket,id=<id>,fd=<fd>[,server=on|off][,wait=on|off]
  --chardev stdio,id=<id>
                         configure a character device backend

  --export [type=]nbd,id=<id>,node-name=<node-name>[,name=<export-name>]
           [,writable=on|off]
                         export the specified block node over NBD
                         (requires --nbd-server)

  --monitor [chardev=]name[,mode=control][,pretty[=on|off]]
                         configure a QMP monitor

  --nbd-server addr.type=unix,addr.path=<path>
                         start an NBD server for exporting block nodes

  --object throttle-group,id=<id>[,limits.<limit>=<value>...]
  --object iothread,id=<id>
                         create a new object (throttle groups, iothreads)

  --pidfile <path>       write process ID to a file after startup
  --strata-policy <name> (Strata only) run block-stream under another
                         position of the 2020 thread (docs/POLICIES.md)
"
    )
}

/// `--version`.
pub fn version() -> String {
    format!(
        "strata-qsd version {} (QMP of qemu-storage-daemon 10.0.2)\n",
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Invocation, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse("qemu-storage-daemon", &args).map_err(|e| e.line().to_string())
    }

    /// Texts from qemu-storage-daemon 10.0.2 run with the same arguments.
    #[test]
    fn getopt_errors_are_qsds() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--bogus"],
                "qemu-storage-daemon: unrecognized option '--bogus'",
            ),
            (&["-x"], "qemu-storage-daemon: invalid option -- 'x'"),
            (
                &["--chardev"],
                "qemu-storage-daemon: option '--chardev' requires an argument",
            ),
            (
                &["--pidfile"],
                "qemu-storage-daemon: option '--pidfile' requires an argument",
            ),
            (&["foo"], "qemu-storage-daemon: foo: Unexpected argument"),
        ];
        for (args, want) in cases {
            assert_eq!(run(args).unwrap_err(), *want, "{args:?}");
        }
    }

    #[test]
    fn options_keep_their_order() {
        let Ok(Invocation::Run(plan)) = run(&[
            "--chardev",
            "socket,path=s,server=on,wait=off,id=m0",
            "--monitor=chardev=m0",
            "--block",
            "null-co,node-name=n",
            "--pidfile",
            "p",
        ]) else {
            panic!("a plan")
        };
        assert_eq!(
            plan.steps,
            [
                Setup::Chardev("socket,path=s,server=on,wait=off,id=m0".into()),
                Setup::Monitor("chardev=m0".into()),
                Setup::Blockdev("null-co,node-name=n".into()),
            ]
        );
        assert_eq!(plan.pidfile.as_deref(), Some("p"));
    }

    #[test]
    fn help_and_version_stop_parsing() {
        assert_eq!(run(&["-h", "--bogus"]), Ok(Invocation::Help));
        assert_eq!(run(&["--vers"]), Ok(Invocation::Version));
        assert_eq!(
            run(&["--help=1"]).unwrap_err(),
            "qemu-storage-daemon: option '--help' doesn't allow an argument"
        );
    }

    #[test]
    fn strata_policy_is_checked_by_name() {
        let Ok(Invocation::Run(plan)) = run(&["--strata-policy", "freeze-base"]) else {
            panic!("a plan")
        };
        assert_eq!(plan.policy.map(|p| p.name), Some("freeze-base"));
        let refused = run(&["--strata-policy=qemu-4.2"]).unwrap_err();
        assert!(
            refused.starts_with("qemu-storage-daemon: --strata-policy: unknown policy 'qemu-4.2'"),
            "{refused}"
        );
    }
}
