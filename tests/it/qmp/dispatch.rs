//! What reaches the block layer: typed commands in, return values and
//! errors out, events, `quit`, pretty printing.  Expected bytes were recorded
//! from qsd 10.0.2 (exchanges quoted beside each test).

use strata_qmp::serde_json::{json, Value};
use strata_qmp::{
    format_event, BlockdevRef, BlockdevRefOrNull, Command, CommandHandler, DriverOptions,
    ErrorClass, Event, EventSink, OnError, QmpError, Session, SessionConfig, Timestamp,
};

/// How a [`Recorder`] answers (and which events the command raises).
type Script = Box<dyn FnMut(&Command, &mut EventSink) -> Result<Value, QmpError>>;

/// Records every command and answers from a script.
struct Recorder {
    seen: Vec<Command>,
    answer: Script,
}

impl Recorder {
    fn new(mut answer: impl FnMut(&Command) -> Result<Value, QmpError> + 'static) -> Recorder {
        Recorder::with_events(move |c, _| answer(c))
    }

    fn with_events(
        answer: impl FnMut(&Command, &mut EventSink) -> Result<Value, QmpError> + 'static,
    ) -> Recorder {
        Recorder {
            seen: Vec::new(),
            answer: Box::new(answer),
        }
    }
}

impl CommandHandler for Recorder {
    fn dispatch(&mut self, command: Command, events: &mut EventSink) -> Result<Value, QmpError> {
        let result = (self.answer)(&command, events);
        self.seen.push(command);
        result
    }
}

fn negotiated(config: SessionConfig, handler: &mut Recorder) -> Session {
    let mut session = Session::new(config);
    session.feed(b"{\"execute\":\"qmp_capabilities\"}", handler);
    session.take_output();
    session
}

fn one_command(request: &str) -> Command {
    let mut rec = Recorder::new(|_| Ok(json!({})));
    let mut session = negotiated(SessionConfig::default(), &mut rec);
    session.feed(request.as_bytes(), &mut rec);
    assert_eq!(session.take_output(), b"{\"return\": {}}\r\n", "{request}");
    assert_eq!(rec.seen.len(), 1);
    rec.seen.pop().unwrap()
}

#[test]
fn valid_requests_arrive_typed() {
    let Command::BlockStream(args) = one_command(
        r#"{"execute":"block-stream","arguments":{"device":"top","job-id":"j0","base-node":"base","bottom":"mid","speed":1024,"on-error":"stop","filter-node-name":"cor","auto-finalize":false,"backing-mask-protocol":true}}"#,
    ) else {
        panic!("not block-stream")
    };
    assert_eq!(args.device, "top");
    assert_eq!(args.job_id.as_deref(), Some("j0"));
    assert_eq!(args.base_node.as_deref(), Some("base"));
    assert_eq!(args.bottom.as_deref(), Some("mid"));
    assert_eq!(args.speed, Some(1024));
    assert_eq!(args.on_error, Some(OnError::Stop));
    assert_eq!(args.filter_node_name.as_deref(), Some("cor"));
    assert_eq!(
        (
            args.auto_finalize,
            args.auto_dismiss,
            args.backing_mask_protocol
        ),
        (Some(false), None, Some(true))
    );

    let Command::BlockCommit(args) = one_command(
        r#"{"execute":"block-commit","arguments":{"device":"d","top-node":"t","base-node":"b","job-id":"c"}}"#,
    ) else {
        panic!("not block-commit")
    };
    assert_eq!(
        (args.top_node.as_deref(), args.base_node.as_deref()),
        (Some("t"), Some("b"))
    );

    // qcow2 over an inline file, backing null: `null` is kept apart from "absent".
    let Command::BlockdevAdd(opts) = one_command(
        r#"{"execute":"blockdev-add","arguments":{"node-name":"top","driver":"qcow2","file":{"driver":"file","filename":"top.img"},"backing":null,"read-only":true}}"#,
    ) else {
        panic!("not blockdev-add")
    };
    assert_eq!(
        (
            opts.driver.as_str(),
            opts.node_name.as_deref(),
            opts.read_only
        ),
        ("qcow2", Some("top"), Some(true))
    );
    let DriverOptions::Qcow2(q) = &opts.kind else {
        panic!("not qcow2")
    };
    assert_eq!(q.backing, Some(BlockdevRefOrNull::Null));
    let BlockdevRef::Definition(file) = &q.file else {
        panic!("inline file")
    };
    assert!(matches!(&file.kind, DriverOptions::File(f) if f.filename == "top.img"));
    assert_eq!(
        opts.options.to_string(),
        r#"{"node-name":"top","driver":"qcow2","file":{"driver":"file","filename":"top.img"},"backing":null,"read-only":true}"#
    );

    // blkdebug with error injection, as conformance scenario 030-eio-* uses it.
    let Command::BlockdevAdd(opts) = one_command(
        r#"{"execute":"blockdev-add","arguments":{"driver":"blkdebug","node-name":"dbg","image":"base","inject-error":[{"event":"read_aio","errno":5,"sector":1024,"once":true}],"set-state":[{"event":"read_aio","state":1,"new_state":2}]}}"#,
    ) else {
        panic!("not blockdev-add")
    };
    let DriverOptions::Blkdebug(dbg) = &opts.kind else {
        panic!("not blkdebug")
    };
    let rule = &dbg.inject_error.as_ref().unwrap()[0];
    assert_eq!(
        (rule.event.as_str(), rule.errno, rule.sector, rule.once),
        ("read_aio", Some(5), Some(1024), Some(true))
    );
    assert_eq!(dbg.set_state.as_ref().unwrap()[0].new_state, 2);

    let Command::BlockdevAdd(opts) = one_command(
        r#"{"execute":"blockdev-add","arguments":{"driver":"copy-on-read","node-name":"cor","file":"top","bottom":"mid"}}"#,
    ) else {
        panic!("not blockdev-add")
    };
    assert!(
        matches!(&opts.kind, DriverOptions::CopyOnRead(c) if c.bottom.as_deref() == Some("mid"))
    );

    let Command::BlockdevAdd(opts) = one_command(
        r#"{"execute":"blockdev-add","arguments":{"driver":"throttle","node-name":"flt","file":"base","throttle-group":"tg0"}}"#,
    ) else {
        panic!("not blockdev-add")
    };
    assert!(matches!(&opts.kind, DriverOptions::Throttle(t) if t.throttle_group == "tg0"));

    // A driver Strata does not model is still validated and passed on.
    let Command::BlockdevAdd(opts) = one_command(
        r#"{"execute":"blockdev-add","arguments":{"driver":"qcow2","node-name":"e","file":"x","encrypt":{"format":"luks"}}}"#,
    ) else {
        panic!("not blockdev-add")
    };
    assert_eq!(opts.options["encrypt"]["format"], "luks");
    let Command::BlockdevAdd(opts) = one_command(
        r#"{"execute":"blockdev-add","arguments":{"driver":"vmdk","node-name":"v","file":"x"}}"#,
    ) else {
        panic!("not blockdev-add")
    };
    assert_eq!(opts.kind, DriverOptions::Other);

    let Command::ObjectAdd(obj) = one_command(
        r#"{"execute":"object-add","arguments":{"qom-type":"throttle-group","id":"tg0","limits":{"bps-read":1048576}}}"#,
    ) else {
        panic!("not object-add")
    };
    assert_eq!(obj.props["limits"]["bps-read"], 1048576);

    let Command::BlockdevReopen { options } = one_command(
        r#"{"execute":"blockdev-reopen","arguments":{"options":[{"driver":"qcow2","node-name":"n4","file":"f4","backing":"n3"}]}}"#,
    ) else {
        panic!("not blockdev-reopen")
    };
    assert!(
        matches!(&options[0].kind, DriverOptions::Qcow2(q) if q.backing == Some(BlockdevRefOrNull::Reference("n3".into())))
    );

    assert_eq!(
        one_command(r#"{"execute":"block-job-set-speed","arguments":{"device":"j","speed":0}}"#),
        Command::BlockJobSetSpeed {
            device: "j".into(),
            speed: 0
        }
    );
    assert_eq!(
        one_command(r#"{"execute":"job-dismiss","arguments":{"id":"j"}}"#),
        Command::JobDismiss { id: "j".into() }
    );
    assert_eq!(
        one_command(r#"{"execute":"query-named-block-nodes","arguments":{"flat":true}}"#),
        Command::QueryNamedBlockNodes { flat: Some(true) }
    );
    let Command::NbdServerStart(nbd) = one_command(
        r#"{"execute":"nbd-server-start","arguments":{"addr":{"type":"unix","data":{"path":"/tmp/n.sock"}},"max-connections":4294967295}}"#,
    ) else {
        panic!("not nbd-server-start")
    };
    assert_eq!(nbd.max_connections, Some(u32::MAX));
}

/// Recorded (fresh qsd, negotiated):
/// `{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"n0"}}` then
/// `{"execute":"query-named-block-nodes","arguments":{"flat":true}}` answered the line below.
/// The handler builds the same data in an arbitrary member order; the
/// session puts it into QEMU's order.
#[test]
fn return_values_print_like_qsd() {
    const QSD: &str = "{\"return\": [{\"iops_rd\": 0, \"detect_zeroes\": \"off\", \"active\": true, \"image\": {\"virtual-size\": 1073741824, \"filename\": \"null-co://\", \"format\": \"null-co\", \"actual-size\": 0}, \"iops_wr\": 0, \"ro\": false, \"node-name\": \"n0\", \"backing_file_depth\": 0, \"drv\": \"null-co\", \"iops\": 0, \"bps_wr\": 0, \"write_threshold\": 0, \"encrypted\": false, \"bps\": 0, \"bps_rd\": 0, \"cache\": {\"no-flush\": false, \"direct\": false, \"writeback\": true}, \"file\": \"null-co://\"}]}\r\n";
    let mut rec = Recorder::new(|_| {
        Ok(json!([{
            "file": "null-co://", "node-name": "n0", "ro": false, "drv": "null-co", "encrypted": false,
            "detect_zeroes": "off", "bps": 0, "bps_rd": 0, "bps_wr": 0, "iops": 0, "iops_rd": 0, "iops_wr": 0,
            "image": {"filename": "null-co://", "format": "null-co", "virtual-size": 1073741824, "actual-size": 0},
            "cache": {"writeback": true, "direct": false, "no-flush": false},
            "write_threshold": 0, "backing_file_depth": 0, "active": true
        }]))
    });
    let mut session = negotiated(SessionConfig::default(), &mut rec);
    session.feed(
        br#"{"execute":"query-named-block-nodes","arguments":{"flat":true}}"#,
        &mut rec,
    );
    assert_eq!(String::from_utf8(session.take_output()).unwrap(), QSD);
}

/// Return values of a stream job in flight, recorded from qsd 10.0.2:
/// `base.qcow2` (4 MiB, 2 MiB written) under `top.qcow2`;
/// `blockdev-add {"driver":"qcow2","node-name":"top","file":{"driver":"file","filename":"top.qcow2"}}`,
/// `block-stream {"device":"top","job-id":"j","speed":1024}`, then each command
/// below (graph and node list after `block-job-pause`).  The handler returns
/// the same data with every object's members sorted in reverse alphabetical
/// order; the session must still print qsd's bytes: schema order decides
/// ties within a hash bucket (`write_threshold` before `backing_file`).
const RETURNS: &[(&str, &str)] = &[
    ("{\"execute\":\"query-jobs\"}", "{\"return\": [{\"current-progress\": 524288, \"status\": \"running\", \"total-progress\": 4194304, \"type\": \"stream\", \"id\": \"j\"}]}\r\n"),
    ("{\"execute\":\"query-block-jobs\"}", "{\"return\": [{\"auto-finalize\": true, \"io-status\": \"ok\", \"device\": \"j\", \"auto-dismiss\": true, \"busy\": false, \"len\": 4194304, \"offset\": 524288, \"status\": \"running\", \"paused\": false, \"speed\": 1024, \"ready\": false, \"type\": \"stream\"}]}\r\n"),
    ("{\"execute\":\"x-debug-query-block-graph\"}", "{\"return\": {\"edges\": [{\"name\": \"file\", \"parent\": 2, \"shared-perm\": [\"write-unchanged\", \"write\", \"consistent-read\"], \"perm\": [\"write-unchanged\", \"consistent-read\"], \"child\": 5}, {\"name\": \"file\", \"parent\": 4, \"shared-perm\": [\"write-unchanged\", \"consistent-read\"], \"perm\": [\"consistent-read\"], \"child\": 7}, {\"name\": \"file\", \"parent\": 5, \"shared-perm\": [\"write-unchanged\", \"consistent-read\"], \"perm\": [\"resize\", \"write-unchanged\", \"write\", \"consistent-read\"], \"child\": 6}, {\"name\": \"backing\", \"parent\": 5, \"shared-perm\": [\"resize\", \"write-unchanged\", \"write\", \"consistent-read\"], \"perm\": [\"consistent-read\"], \"child\": 4}, {\"name\": \"main node\", \"parent\": 3, \"shared-perm\": [\"resize\", \"write-unchanged\", \"write\", \"consistent-read\"], \"perm\": [], \"child\": 2}, {\"name\": \"active node\", \"parent\": 3, \"shared-perm\": [\"write-unchanged\", \"write\", \"consistent-read\"], \"perm\": [], \"child\": 5}, {\"name\": \"intermediate node\", \"parent\": 3, \"shared-perm\": [\"write-unchanged\", \"consistent-read\"], \"perm\": [], \"child\": 4}, {\"name\": \"root\", \"parent\": 1, \"shared-perm\": [\"write-unchanged\", \"write\", \"consistent-read\"], \"perm\": [\"consistent-read\"], \"child\": 2}], \"nodes\": [{\"name\": \"#block329\", \"type\": \"block-driver\", \"id\": 2}, {\"name\": \"#block218\", \"type\": \"block-driver\", \"id\": 4}, {\"name\": \"#block198\", \"type\": \"block-driver\", \"id\": 7}, {\"name\": \"top\", \"type\": \"block-driver\", \"id\": 5}, {\"name\": \"#block042\", \"type\": \"block-driver\", \"id\": 6}, {\"name\": \"j\", \"type\": \"block-job\", \"id\": 3}, {\"name\": \"\", \"type\": \"block-backend\", \"id\": 1}]}}\r\n"),
    ("{\"execute\":\"query-named-block-nodes\"}", "{\"return\": [{\"iops_rd\": 0, \"detect_zeroes\": \"off\", \"active\": true, \"image\": {\"backing-image\": {\"backing-image\": {\"virtual-size\": 4194304, \"filename\": \"base.qcow2\", \"cluster-size\": 65536, \"format\": \"qcow2\", \"actual-size\": 2363392, \"format-specific\": {\"type\": \"qcow2\", \"data\": {\"compat\": \"1.1\", \"compression-type\": \"zlib\", \"lazy-refcounts\": false, \"refcount-bits\": 16, \"corrupt\": false, \"extended-l2\": false}}, \"dirty-flag\": false}, \"backing-filename-format\": \"qcow2\", \"virtual-size\": 4194304, \"filename\": \"top.qcow2\", \"cluster-size\": 65536, \"format\": \"qcow2\", \"actual-size\": 790528, \"format-specific\": {\"type\": \"qcow2\", \"data\": {\"compat\": \"1.1\", \"compression-type\": \"zlib\", \"lazy-refcounts\": false, \"refcount-bits\": 16, \"corrupt\": false, \"extended-l2\": false}}, \"full-backing-filename\": \"base.qcow2\", \"backing-filename\": \"base.qcow2\", \"dirty-flag\": false}, \"virtual-size\": 4194304, \"filename\": \"top.qcow2\", \"cluster-size\": 65536, \"format\": \"copy-on-read\", \"actual-size\": 790528, \"dirty-flag\": false}, \"iops_wr\": 0, \"ro\": false, \"node-name\": \"#block329\", \"backing_file_depth\": 2, \"drv\": \"copy-on-read\", \"iops\": 0, \"bps_wr\": 0, \"write_threshold\": 0, \"encrypted\": false, \"bps\": 0, \"bps_rd\": 0, \"cache\": {\"no-flush\": false, \"direct\": false, \"writeback\": true}, \"file\": \"top.qcow2\"}, {\"iops_rd\": 0, \"detect_zeroes\": \"off\", \"active\": true, \"image\": {\"virtual-size\": 4194304, \"filename\": \"base.qcow2\", \"cluster-size\": 65536, \"format\": \"qcow2\", \"actual-size\": 2363392, \"format-specific\": {\"type\": \"qcow2\", \"data\": {\"compat\": \"1.1\", \"compression-type\": \"zlib\", \"lazy-refcounts\": false, \"refcount-bits\": 16, \"corrupt\": false, \"extended-l2\": false}}, \"dirty-flag\": false}, \"iops_wr\": 0, \"ro\": true, \"node-name\": \"#block218\", \"backing_file_depth\": 0, \"drv\": \"qcow2\", \"iops\": 0, \"bps_wr\": 0, \"write_threshold\": 0, \"encrypted\": false, \"bps\": 0, \"bps_rd\": 0, \"cache\": {\"no-flush\": false, \"direct\": false, \"writeback\": true}, \"file\": \"base.qcow2\"}, {\"iops_rd\": 0, \"detect_zeroes\": \"off\", \"active\": true, \"image\": {\"virtual-size\": 2424832, \"filename\": \"base.qcow2\", \"format\": \"file\", \"actual-size\": 2363392, \"format-specific\": {\"type\": \"file\", \"data\": {}}, \"dirty-flag\": false}, \"iops_wr\": 0, \"ro\": true, \"node-name\": \"#block198\", \"backing_file_depth\": 0, \"drv\": \"file\", \"iops\": 0, \"bps_wr\": 0, \"write_threshold\": 0, \"encrypted\": false, \"bps\": 0, \"bps_rd\": 0, \"cache\": {\"no-flush\": false, \"direct\": false, \"writeback\": true}, \"file\": \"base.qcow2\"}, {\"iops_rd\": 0, \"detect_zeroes\": \"off\", \"active\": true, \"image\": {\"backing-image\": {\"virtual-size\": 4194304, \"filename\": \"base.qcow2\", \"cluster-size\": 65536, \"format\": \"qcow2\", \"actual-size\": 2363392, \"format-specific\": {\"type\": \"qcow2\", \"data\": {\"compat\": \"1.1\", \"compression-type\": \"zlib\", \"lazy-refcounts\": false, \"refcount-bits\": 16, \"corrupt\": false, \"extended-l2\": false}}, \"dirty-flag\": false}, \"backing-filename-format\": \"qcow2\", \"virtual-size\": 4194304, \"filename\": \"top.qcow2\", \"cluster-size\": 65536, \"format\": \"qcow2\", \"actual-size\": 790528, \"format-specific\": {\"type\": \"qcow2\", \"data\": {\"compat\": \"1.1\", \"compression-type\": \"zlib\", \"lazy-refcounts\": false, \"refcount-bits\": 16, \"corrupt\": false, \"extended-l2\": false}}, \"full-backing-filename\": \"base.qcow2\", \"backing-filename\": \"base.qcow2\", \"dirty-flag\": false}, \"iops_wr\": 0, \"ro\": false, \"node-name\": \"top\", \"backing_file_depth\": 1, \"drv\": \"qcow2\", \"iops\": 0, \"bps_wr\": 0, \"write_threshold\": 0, \"backing_file\": \"base.qcow2\", \"encrypted\": false, \"bps\": 0, \"bps_rd\": 0, \"cache\": {\"no-flush\": false, \"direct\": false, \"writeback\": true}, \"file\": \"top.qcow2\"}, {\"iops_rd\": 0, \"detect_zeroes\": \"off\", \"active\": true, \"image\": {\"virtual-size\": 851968, \"filename\": \"top.qcow2\", \"format\": \"file\", \"actual-size\": 790528, \"format-specific\": {\"type\": \"file\", \"data\": {}}, \"dirty-flag\": false}, \"iops_wr\": 0, \"ro\": false, \"node-name\": \"#block042\", \"backing_file_depth\": 0, \"drv\": \"file\", \"iops\": 0, \"bps_wr\": 0, \"write_threshold\": 0, \"encrypted\": false, \"bps\": 0, \"bps_rd\": 0, \"cache\": {\"no-flush\": false, \"direct\": false, \"writeback\": true}, \"file\": \"top.qcow2\"}]}\r\n"),
];

fn scramble_members(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut members: Vec<_> = map.iter().collect();
            members.sort_by(|a, b| b.0.cmp(a.0));
            Value::Object(
                members
                    .into_iter()
                    .map(|(k, v)| (k.clone(), scramble_members(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(scramble_members).collect()),
        other => other.clone(),
    }
}

#[test]
fn job_and_graph_queries_print_like_qsd() {
    for (request, recorded) in RETURNS {
        let parsed: Value = strata_qmp::serde_json::from_str(recorded.trim_end()).unwrap();
        let scrambled = scramble_members(&parsed["return"]);
        let mut rec = Recorder::new(move |_| Ok(scrambled.clone()));
        let mut session = negotiated(SessionConfig::default(), &mut rec);
        session.feed(request.as_bytes(), &mut rec);
        assert_eq!(
            String::from_utf8(session.take_output()).unwrap(),
            *recorded,
            "{request}"
        );
    }
}

/// Recorded: `{"execute":"block-job-set-speed","arguments":{"device":"x","speed":1}}` →
/// `{"error": {"class": "DeviceNotActive", "desc": "Block job 'x' not found"}}`, and with an id the
/// id comes first: `{"id": 7, "error": ...}` (as for `{"execute":"foo","id":7}`).
#[test]
fn handler_errors_keep_their_class() {
    let mut rec = Recorder::new(|_| {
        Err(QmpError::new(
            ErrorClass::DeviceNotActive,
            "Block job 'x' not found",
        ))
    });
    let mut session = negotiated(SessionConfig::default(), &mut rec);
    session.feed(
        br#"{"execute":"block-job-set-speed","arguments":{"device":"x","speed":1}}"#,
        &mut rec,
    );
    session.feed(
        br#"{"execute":"block-job-set-speed","arguments":{"device":"x","speed":1},"id":7}"#,
        &mut rec,
    );
    assert_eq!(
        String::from_utf8(session.take_output()).unwrap(),
        "{\"error\": {\"class\": \"DeviceNotActive\", \"desc\": \"Block job 'x' not found\"}}\r\n\
         {\"id\": 7, \"error\": {\"class\": \"DeviceNotActive\", \"desc\": \"Block job 'x' not found\"}}\r\n"
    );
}

/// Recorded after `{"execute":"block-stream","arguments":{"device":"n0","job-id":"j"}}` on a
/// null-co node (qsd sent these before the command's `{"return": {}}`).
#[test]
fn events_print_like_qsd() {
    let cases = [
        (
            Event { name: "JOB_STATUS_CHANGE".into(), data: Some(json!({"id": "j", "status": "created"})) },
            Timestamp { seconds: 1795562351, microseconds: 849438 },
            "{\"timestamp\": {\"seconds\": 1795562351, \"microseconds\": 849438}, \"event\": \"JOB_STATUS_CHANGE\", \"data\": {\"status\": \"created\", \"id\": \"j\"}}\r\n",
        ),
        (
            Event {
                name: "BLOCK_JOB_COMPLETED".into(),
                data: Some(json!({"type": "stream", "device": "j", "len": 0, "offset": 0, "speed": 0})),
            },
            Timestamp { seconds: 1795562351, microseconds: 849571 },
            "{\"timestamp\": {\"seconds\": 1795562351, \"microseconds\": 849571}, \"event\": \"BLOCK_JOB_COMPLETED\", \"data\": {\"device\": \"j\", \"len\": 0, \"offset\": 0, \"speed\": 0, \"type\": \"stream\"}}\r\n",
        ),
    ];
    for (event, ts, expected) in cases {
        assert_eq!(
            String::from_utf8(format_event(&event, ts, false)).unwrap(),
            expected
        );
    }
}

/// Recorded: `{"execute":"block-stream","arguments":{"device":"n0","job-id":"j"}}` on a
/// null-co node: qsd sent seven events (created, running, waiting, pending,
/// BLOCK_JOB_COMPLETED, concluded, null) and then `{"return": {}}`.  Events
/// a command raises come before its response.
#[test]
fn events_raised_by_a_command_precede_its_response() {
    let mut rec = Recorder::with_events(|_, events| {
        for (i, status) in ["created", "running"].iter().enumerate() {
            events.emit(
                Event {
                    name: "JOB_STATUS_CHANGE".into(),
                    data: Some(json!({"id": "j", "status": status})),
                },
                Timestamp {
                    seconds: 1795562351,
                    microseconds: 849438 + 58 * i as i64,
                },
            );
        }
        Ok(json!({}))
    });
    let mut session = negotiated(SessionConfig::default(), &mut rec);
    session.feed(
        br#"{"execute":"block-stream","arguments":{"device":"n0","job-id":"j"}}"#,
        &mut rec,
    );
    assert_eq!(
        String::from_utf8(session.take_output()).unwrap(),
        "{\"timestamp\": {\"seconds\": 1795562351, \"microseconds\": 849438}, \"event\": \"JOB_STATUS_CHANGE\", \"data\": {\"status\": \"created\", \"id\": \"j\"}}\r\n\
         {\"timestamp\": {\"seconds\": 1795562351, \"microseconds\": 849496}, \"event\": \"JOB_STATUS_CHANGE\", \"data\": {\"status\": \"running\", \"id\": \"j\"}}\r\n\
         {\"return\": {}}\r\n"
    );
}

#[test]
fn no_events_before_negotiation() {
    let mut rec = Recorder::new(|_| Ok(json!({})));
    let mut session = Session::new(SessionConfig::default());
    session.take_output();
    let event = Event {
        name: "JOB_STATUS_CHANGE".into(),
        data: Some(json!({"id": "j", "status": "created"})),
    };
    session.send_event(
        &event,
        Timestamp {
            seconds: 1,
            microseconds: 2,
        },
    );
    assert!(session.take_output().is_empty());
    session.feed(b"{\"execute\":\"qmp_capabilities\"}", &mut rec);
    session.take_output();
    session.send_event(
        &event,
        Timestamp {
            seconds: 1,
            microseconds: 2,
        },
    );
    assert!(!session.take_output().is_empty());
}

/// Recorded: `{"execute":"quit","id":5}` → `{"return": {}, "id": 5}`, then qsd
/// closes the connection and exits.
#[test]
fn quit_is_answered_then_flagged() {
    let mut rec = Recorder::new(|_| Ok(Value::Null));
    let mut session = negotiated(SessionConfig::default(), &mut rec);
    assert!(!session.quit_requested());
    session.feed(br#"{"execute":"quit","id":5}"#, &mut rec);
    assert_eq!(session.take_output(), b"{\"return\": {}, \"id\": 5}\r\n");
    assert!(session.quit_requested());
    assert_eq!(rec.seen, vec![Command::Quit]);
}

/// Recorded with `--monitor chardev=m0,pretty=on`: the greeting, then
/// `{"execute":"qmp_capabilities"}`, `{"execute":"query-jobs","id":[1,{}]}`,
/// `{"execute":"nope"}`, and (after adding null-co node n0)
/// `{"execute":"x-debug-query-block-graph"}` and
/// `{"execute":"block-job-pause","arguments":{"device":"x"},"id":"i"}`.
#[test]
fn pretty_monitor_prints_like_qsd() {
    let mut rec = Recorder::new(|c| match c {
        Command::QueryJobs => Ok(json!([])),
        Command::XDebugQueryBlockGraph => {
            Ok(json!({"nodes": [{"id": 1, "type": "block-driver", "name": "n0"}], "edges": []}))
        }
        _ => Err(QmpError::new(
            ErrorClass::DeviceNotActive,
            "Block job 'x' not found",
        )),
    });
    let mut session = Session::new(SessionConfig {
        pretty: true,
        ..SessionConfig::default()
    });
    let greeting = "{\r\n    \"QMP\": {\r\n        \"version\": {\r\n            \"qemu\": {\r\n                \"micro\": 2,\r\n                \"minor\": 0,\r\n                \"major\": 10\r\n            },\r\n            \"package\": \"Debian 1:10.0.2+ds-2+deb13u1~bpo12+1\"\r\n        },\r\n        \"capabilities\": [\r\n            \"oob\"\r\n        ]\r\n    }\r\n}\r\n";
    assert_eq!(String::from_utf8(session.take_output()).unwrap(), greeting);
    let exchanges: [(&[u8], &str); 5] = [
        (b"{\"execute\":\"qmp_capabilities\"}", "{\r\n    \"return\": {\r\n    }\r\n}\r\n"),
        (
            b"{\"execute\":\"query-jobs\",\"id\":[1,{}]}",
            "{\r\n    \"return\": [\r\n    ],\r\n    \"id\": [\r\n        1,\r\n        {\r\n        }\r\n    ]\r\n}\r\n",
        ),
        (
            b"{\"execute\":\"nope\"}",
            "{\r\n    \"error\": {\r\n        \"class\": \"CommandNotFound\",\r\n        \"desc\": \"The command nope has not been found\"\r\n    }\r\n}\r\n",
        ),
        (
            b"{\"execute\":\"x-debug-query-block-graph\"}",
            "{\r\n    \"return\": {\r\n        \"edges\": [\r\n        ],\r\n        \"nodes\": [\r\n            {\r\n                \"name\": \"n0\",\r\n                \"type\": \"block-driver\",\r\n                \"id\": 1\r\n            }\r\n        ]\r\n    }\r\n}\r\n",
        ),
        (
            b"{\"execute\":\"block-job-pause\",\"arguments\":{\"device\":\"x\"},\"id\":\"i\"}",
            "{\r\n    \"id\": \"i\",\r\n    \"error\": {\r\n        \"class\": \"DeviceNotActive\",\r\n        \"desc\": \"Block job 'x' not found\"\r\n    }\r\n}\r\n",
        ),
    ];
    for (input, expected) in exchanges {
        session.feed(input, &mut rec);
        assert_eq!(String::from_utf8(session.take_output()).unwrap(), expected);
    }
}

/// A monitor without an I/O thread offers no `oob`; asking for it fails
/// with `qmp_caps_accept()`'s text (monitor/qmp-cmds-control.c, QEMU
/// 10.0.2), which lists every occurrence.  Not observable on qsd itself:
/// its socket and stdio monitors both offer `oob` (recorded:
/// `qemu-storage-daemon --chardev stdio,id=m0 --monitor chardev=m0` greets with
/// `"capabilities": ["oob"]` and accepts `{"enable": ["oob"]}`).
#[test]
fn oob_must_be_offered() {
    let mut rec = Recorder::new(|_| Ok(json!({})));
    let mut session = Session::new(SessionConfig {
        offer_oob: false,
        ..SessionConfig::default()
    });
    assert!(String::from_utf8(session.take_output())
        .unwrap()
        .ends_with("\"capabilities\": []}}\r\n"));
    session.feed(
        br#"{"execute":"qmp_capabilities","arguments":{"enable":["oob","oob"]}}"#,
        &mut rec,
    );
    assert_eq!(
        session.take_output(),
        b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"Capability oob, oob not available\"}}\r\n"
    );
    assert!(!session.is_negotiated());
}
