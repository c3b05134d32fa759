//! qemu-storage-daemon's QAPI command-line options (`--blockdev`, `--object`,
//! `--export`, `--nbd-server`, `--monitor`): keyval syntax, JSON syntax, and
//! the keyval visitor's texts.
//!
//! Each error row was recorded by running `qemu-storage-daemon FLAG ARG` and
//! taking its stderr line (qsd exits 1); [`super::oracle`] reruns them.

use strata_qmp::{cli_error_line, parse_cli_option, CliOption, CliValue, DriverOptions, QObject};
use CliOption::*;

/// `(option, argument, what qsd printed on stderr)`.
pub const ERRORS: &[(CliOption, &str, &str)] = &[
    (Object, "memory-backend-ram,id=m,size=x", "qemu-storage-daemon: --object memory-backend-ram,id=m,size=x: Parameter 'size' expects size"),
    (Object, "memory-backend-ram,id=m,size=1.5", "qemu-storage-daemon: --object memory-backend-ram,id=m,size=1.5: Parameter 'size' expects size"),
    (Object, "memory-backend-ram,id=m,size=-1", "qemu-storage-daemon: --object memory-backend-ram,id=m,size=-1: Parameter 'size' expects size"),
    (Object, "memory-backend-ram,id=m,size=16E", "qemu-storage-daemon: --object memory-backend-ram,id=m,size=16E: Parameter 'size' expects size"),
    (Object, "memory-backend-ram,id=m,size=1Q", "qemu-storage-daemon: --object memory-backend-ram,id=m,size=1Q: Parameter 'size' expects size"),
    (Object, "memory-backend-ram,id=m,size=0x1M", "qemu-storage-daemon: --object memory-backend-ram,id=m,size=0x1M: Parameter 'size' expects size"),
    (Object, "memory-backend-ram,id=m,size.a=1", "qemu-storage-daemon: --object memory-backend-ram,id=m,size.a=1: Parameters 'size.*' are unexpected"),
    (Object, "memory-backend-ram,id=m,size=1M,prealloc-threads=4294967296", "qemu-storage-daemon: --object memory-backend-ram,id=m,size=1M,prealloc-threads=4294967296: Parameter 'prealloc-threads' expects uint32_t"),
    (Object, "memory-backend-ram,id=m,size=1M,prealloc=maybe", "qemu-storage-daemon: --object memory-backend-ram,id=m,size=1M,prealloc=maybe: Parameter 'prealloc' expects 'on' or 'off'"),
    (NbdServer, "addr.type=inet,addr.host=127.0.0.1,addr.port=1,addr.to=65536", "qemu-storage-daemon: --nbd-server addr.type=inet,addr.host=127.0.0.1,addr.port=1,addr.to=65536: Parameter 'to' expects uint16_t"),
    (NbdServer, "addr.type=inet,addr.host=127.0.0.1,addr.port=1,addr.to=x", "qemu-storage-daemon: --nbd-server addr.type=inet,addr.host=127.0.0.1,addr.port=1,addr.to=x: Parameter 'addr.to' expects integer"),
    (NbdServer, "addr.type=inet,addr.host=127.0.0.1,addr.port=1,addr.ipv4=on,addr.bogus=1", "qemu-storage-daemon: --nbd-server addr.type=inet,addr.host=127.0.0.1,addr.port=1,addr.ipv4=on,addr.bogus=1: Parameter 'addr.bogus' is unexpected"),
    (Blockdev, "{} {}", "qemu-storage-daemon: --blockdev {} {}: Expecting at most one JSON value"),
    (Blockdev, "{\"a\":1}]", "qemu-storage-daemon: --blockdev {\"a\":1}]: Expecting at most one JSON value"),
    (Blockdev, "driver=foo", "qemu-storage-daemon: --blockdev driver=foo: Parameter 'driver' does not accept value 'foo'"),
    (Blockdev, "null-co,node-name=a,size=x", "qemu-storage-daemon: --blockdev null-co,node-name=a,size=x: Parameter 'size' expects integer"),
    (Blockdev, "null-co,node-name=a,read-only=maybe", "qemu-storage-daemon: --blockdev null-co,node-name=a,read-only=maybe: Parameter 'read-only' expects 'on' or 'off'"),
    (Blockdev, "null-co,node-name=a,size=1,size.x=2", "qemu-storage-daemon: --blockdev null-co,node-name=a,size=1,size.x=2: Parameters 'size.*' used inconsistently"),
    (Blockdev, "driver=quorum,children.0=a,children.2=b,vote-threshold=1", "qemu-storage-daemon: --blockdev driver=quorum,children.0=a,children.2=b,vote-threshold=1: Parameter 'children.1' missing"),
    (Blockdev, "driver=quorum,children.0=a,children.x=b,vote-threshold=1", "qemu-storage-daemon: --blockdev driver=quorum,children.0=a,children.x=b,vote-threshold=1: Parameters 'children.*' used inconsistently"),
    (Blockdev, "driver=quorum,children.1=a,vote-threshold=1", "qemu-storage-daemon: --blockdev driver=quorum,children.1=a,vote-threshold=1: Parameter 'children.0' missing"),
    (Blockdev, "{\"driver\":\"foo\"}", "qemu-storage-daemon: --blockdev {\"driver\":\"foo\"}: Parameter 'driver' does not accept value 'foo'"),
    (Blockdev, "{\"driver\":", "qemu-storage-daemon: --blockdev {\"driver\":: JSON parse error, premature EOI"),
    (Blockdev, "{\"driver\":\"null-co\",\"size\":\"1\"}", "qemu-storage-daemon: --blockdev {\"driver\":\"null-co\",\"size\":\"1\"}: Invalid parameter type for 'size', expected: integer"),
    (Blockdev, "{'driver':'null-co','bogus':1}", "qemu-storage-daemon: --blockdev {'driver':'null-co','bogus':1}: Parameter 'bogus' is unexpected"),
    (Blockdev, "help", "qemu-storage-daemon: --blockdev help: Help is not available for this option"),
    (Blockdev, "=x", "qemu-storage-daemon: --blockdev =x: Invalid parameter ''"),
    (Blockdev, "a.=x", "qemu-storage-daemon: --blockdev a.=x: Invalid parameter 'a.'"),
    (Blockdev, ".a=x", "qemu-storage-daemon: --blockdev .a=x: Invalid parameter '.a'"),
    (Blockdev, "a..b=x", "qemu-storage-daemon: --blockdev a..b=x: Invalid parameter 'a..b'"),
    (Blockdev, "driver", "qemu-storage-daemon: --blockdev driver: Parameter 'driver' does not accept value 'driver'"),
    (Blockdev, "driver=null-co,node-name", "qemu-storage-daemon: --blockdev driver=null-co,node-name: Expected '=' after parameter 'node-name'"),
    (Blockdev, "null-co,size.0=1", "qemu-storage-daemon: --blockdev null-co,size.0=1: Parameters 'size.*' are unexpected"),
    (Blockdev, "null-co,node-name=n,size=1M", "qemu-storage-daemon: --blockdev null-co,node-name=n,size=1M: Parameter 'size' expects integer"),
    (Blockdev, "null-co,node-name=n,latency-ns=1x", "qemu-storage-daemon: --blockdev null-co,node-name=n,latency-ns=1x: Parameter 'latency-ns' expects integer"),
    (Blockdev, "null-co,node-name=n,cache.direct=1", "qemu-storage-daemon: --blockdev null-co,node-name=n,cache.direct=1: Parameter 'cache.direct' expects 'on' or 'off'"),
    (Blockdev, "null-co,node-name=n,cache=on", "qemu-storage-daemon: --blockdev null-co,node-name=n,cache=on: Invalid parameter type for 'cache', expected: object"),
    (Blockdev, "null-co,node-name=n,bogus=1", "qemu-storage-daemon: --blockdev null-co,node-name=n,bogus=1: Parameter 'bogus' is unexpected"),
    (Blockdev, "null-co,node-name=n,0=1", "qemu-storage-daemon: --blockdev null-co,node-name=n,0=1: Invalid parameter '0'"),
    (Blockdev, "driver=blkdebug,image.driver=null-co,inject-error.0.event=read_aio,inject-error.0.errno=x", "qemu-storage-daemon: --blockdev driver=blkdebug,image.driver=null-co,inject-error.0.event=read_aio,inject-error.0.errno=x: Parameter 'inject-error.0.errno' expects integer"),
    (Blockdev, "driver=blkdebug,image.driver=null-co,inject-error.0.event=nope", "qemu-storage-daemon: --blockdev driver=blkdebug,image.driver=null-co,inject-error.0.event=nope: Parameter 'event' does not accept value 'nope'"),
    (Blockdev, "driver=blkdebug,image.driver=null-co,inject-error.0.event=read_aio,inject-error.0.bogus=1", "qemu-storage-daemon: --blockdev driver=blkdebug,image.driver=null-co,inject-error.0.event=read_aio,inject-error.0.bogus=1: Parameter 'inject-error.0.bogus' is unexpected"),
    (Blockdev, "driver=blkdebug,image.driver=null-co,max-transfer=4294967296", "qemu-storage-daemon: --blockdev driver=blkdebug,image.driver=null-co,max-transfer=4294967296: Parameter 'max-transfer' expects int32_t"),
    (Blockdev, "driver=qcow2,file.driver=file", "qemu-storage-daemon: --blockdev driver=qcow2,file.driver=file: Parameter 'file.filename' is missing"),
    (Blockdev, "driver=raw,file.driver=null-co,file.size=1,offset=-0x10,size=08", "qemu-storage-daemon: --blockdev driver=raw,file.driver=null-co,file.size=1,offset=-0x10,size=08: Parameter 'size' expects integer"),
    (Blockdev, "driver=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "qemu-storage-daemon: --blockdev driver=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: Parameter 'driver' does not accept value 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'"),
    (Blockdev, "driver=null-co,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=1", "qemu-storage-daemon: --blockdev driver=null-co,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=1: Parameter 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' is too long"),
    (Blockdev, "driver=null-co,x.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=1", "qemu-storage-daemon: --blockdev driver=null-co,x.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=1: Parameter fragment 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' is too long"),
    (NbdServer, "addr.type=unix", "qemu-storage-daemon: --nbd-server addr.type=unix: Parameter 'addr.path' is missing"),
    (NbdServer, "addr.type=unix,addr.path=/nonexistent/n.sock,max-connections=-1", "qemu-storage-daemon: --nbd-server addr.type=unix,addr.path=/nonexistent/n.sock,max-connections=-1: Parameter 'max-connections' expects uint32_t"),
    (NbdServer, "addr.type=unix,addr.path=/nonexistent/n.sock,max-connections=4294967296", "qemu-storage-daemon: --nbd-server addr.type=unix,addr.path=/nonexistent/n.sock,max-connections=4294967296: Parameter 'max-connections' expects uint32_t"),
    (NbdServer, "unix", "qemu-storage-daemon: --nbd-server unix: Expected '=' after parameter 'unix'"),
    (Export, "nbd,id=e", "qemu-storage-daemon: --export nbd,id=e: Parameter 'node-name' is missing"),
    (Export, "type=bogus,id=e,node-name=x", "qemu-storage-daemon: --export type=bogus,id=e,node-name=x: Parameter 'type' does not accept value 'bogus'"),
    (Export, "nbd,id=e,node-name=x,writable=yes,bogus=1", "qemu-storage-daemon: --export nbd,id=e,node-name=x,writable=yes,bogus=1: Parameter 'bogus' is unexpected"),
    (Object, "throttle-group,id=tg,x-iops-total=abc", "qemu-storage-daemon: --object throttle-group,id=tg,x-iops-total=abc: Parameter 'x-iops-total' expects integer"),
    (Object, "throttle-group,id=tg,limits.iops-total=1M", "qemu-storage-daemon: --object throttle-group,id=tg,limits.iops-total=1M: Parameter 'limits.iops-total' expects integer"),
    (Object, "throttle-group,limits.iops-total=1", "qemu-storage-daemon: --object throttle-group,limits.iops-total=1: Parameter 'id' is missing"),
    (Object, "nope,id=x", "qemu-storage-daemon: --object nope,id=x: Parameter 'qom-type' does not accept value 'nope'"),
    (Monitor, "chardev=m0,mode=x", "qemu-storage-daemon: --monitor chardev=m0,mode=x: Parameter 'mode' does not accept value 'x'"),
    (Monitor, "chardev=m0,pretty=x", "qemu-storage-daemon: --monitor chardev=m0,pretty=x: Parameter 'pretty' expects 'on' or 'off'"),
];

#[test]
fn parser_reports_what_qsd_prints() {
    let mut failures = Vec::new();
    for &(option, arg, expected) in ERRORS {
        let got = match parse_cli_option(option, arg) {
            Ok(v) => format!("accepted: {v:?}"),
            Err(e) => cli_error_line(option, arg, &e),
        };
        if got != expected {
            failures.push(format!(
                "{} {arg}\n  expected: {expected}\n  got:      {got}",
                option.flag()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows differ:\n{}",
        failures.len(),
        ERRORS.len(),
        failures.join("\n")
    );
}

/// Accepted by the parser; qsd then fails (or succeeds) in the block layer,
/// which is not this crate's business.  Recorded:
/// `qemu-storage-daemon --blockdev driver=qcow2,file=f,backing=` prints
/// `'node-name' must be specified for the root node`, i.e. `backing=` (an
/// empty node name) passed the QAPI check.
#[test]
fn valid_arguments_are_typed() {
    let CliValue::Blockdev(b) = parse_cli_option(Blockdev, "driver=qcow2,file=f,backing=").unwrap()
    else {
        panic!("not a blockdev")
    };
    assert!(matches!(
        b.kind,
        DriverOptions::Qcow2(ref q) if q.backing == Some(strata_qmp::BlockdevRefOrNull::Reference(String::new()))
    ));

    // ",," is a literal comma; numbers take C's base prefixes; bools take yes/no.
    let CliValue::Blockdev(b) = parse_cli_option(
        Blockdev,
        "raw,node-name=a,,b,file.driver=null-co,file.size=0x10,offset=010,read-only=yes",
    )
    .unwrap() else {
        panic!("not a blockdev")
    };
    assert_eq!(b.node_name.as_deref(), Some("a,b"));
    assert_eq!(b.read_only, Some(true));
    let DriverOptions::Raw(raw) = &b.kind else {
        panic!("not raw")
    };
    assert_eq!(raw.offset, Some(8));
    let strata_qmp::BlockdevRef::Definition(file) = &raw.file else {
        panic!("inline file")
    };
    assert!(matches!(file.kind, DriverOptions::Null(ref n) if n.size == Some(16)));
    // The options keep the client's order with converted scalars.
    assert_eq!(
        b.options.to_string(),
        r#"{"driver":"raw","node-name":"a,b","file":{"driver":"null-co","size":16},"offset":8,"read-only":true}"#
    );

    // Lists from numeric keys.
    let CliValue::Blockdev(b) = parse_cli_option(
        Blockdev,
        "quorum,children.1=b,children.0=a,vote-threshold=2",
    )
    .unwrap() else {
        panic!("not a blockdev")
    };
    let DriverOptions::Quorum(q) = &b.kind else {
        panic!("not quorum")
    };
    assert_eq!(
        q.children,
        vec![
            strata_qmp::BlockdevRef::Reference("a".into()),
            strata_qmp::BlockdevRef::Reference("b".into())
        ]
    );

    // JSON syntax (QEMU's parser: single quotes are fine).
    let CliValue::Object(o) = parse_cli_option(
        Object,
        "{'qom-type': 'throttle-group', 'id': 'tg', 'limits': {'iops-total': 10}}",
    )
    .unwrap() else {
        panic!("not an object")
    };
    assert_eq!(
        (o.qom_type.as_str(), o.id.as_str()),
        ("throttle-group", "tg")
    );
    assert_eq!(o.props["limits"]["iops-total"], 10);

    let CliValue::Object(o) =
        parse_cli_option(Object, "throttle-group,id=tg,x-bps-read=0x100").unwrap()
    else {
        panic!("not an object")
    };
    assert_eq!(o.props["x-bps-read"], 256);

    // `size` members take size strings in keyval syntax.
    let CliValue::Object(o) =
        parse_cli_option(Object, "memory-backend-ram,id=m,size=1.5M").unwrap()
    else {
        panic!("not an object")
    };
    assert_eq!(o.props["size"], 1572864);
    assert_eq!(parse_cli_option(Object, "help"), Ok(CliValue::Help));

    let CliValue::Export(e) =
        parse_cli_option(Export, "nbd,id=e0,node-name=n0,writable=on,name=disk").unwrap()
    else {
        panic!("not an export")
    };
    assert_eq!(
        (e.kind.as_str(), e.id.as_str(), e.node_name.as_str()),
        ("nbd", "e0", "n0")
    );
    assert_eq!((e.writable, e.name.as_deref()), (Some(true), Some("disk")));

    let CliValue::NbdServer(n) = parse_cli_option(
        NbdServer,
        "addr.type=unix,addr.path=/tmp/n.sock,max-connections=4",
    )
    .unwrap() else {
        panic!("not an nbd server")
    };
    assert_eq!(n["max-connections"], 4);
    assert_eq!(n["addr"]["path"], "/tmp/n.sock");
}

/// keyval builds nested objects and lists; values stay strings.
#[test]
fn keyval_structure() {
    let kv =
        strata_qmp::keyval_parse("a.b.c=1,a.b.d=x,,y,l.0=p,l.1=q,z", Some("ignored")).unwrap_err();
    assert_eq!(kv, "Expected '=' after parameter 'z'");
    let kv =
        strata_qmp::keyval_parse("raw,a.b.c=1,a.b.d=x,,y,l.0=p,l.1=q", Some("driver")).unwrap();
    let json = QObject::Dict(kv.dict).to_json().to_string();
    assert_eq!(
        json,
        r#"{"driver":"raw","a":{"b":{"c":"1","d":"x,y"}},"l":["p","q"]}"#
    );
}
