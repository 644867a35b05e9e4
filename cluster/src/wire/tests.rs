use std::time::Duration;

use ractor::Message;
use ractor::message::SerializedMessage;

use super::*;
use crate::protocol::PROTOCOL_VERSION;
use taskmesh_kernels::task::Priority;

fn hello() -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        node: NodeInfo {
            node_id: "node-a".into(),
            generation: 42,
            cluster_address: "10.0.0.1:4697".into(),
            http_address: "10.0.0.1:8080".into(),
            labels: vec!["heavy".into()],
            kinds: vec!["noop".into(), "word_count".into()],
        },
    }
}

fn spec() -> TaskSpec {
    TaskSpec {
        kind: "monte_carlo_option".into(),
        params: r#"{"paths":1000}"#.into(),
        priority: Priority::High,
        timeout_ms: Some(5000),
        max_retries: 2,
        idempotency_key: Some("k".into()),
        class: Some("heavy".into()),
        request_id: Some("r-1".into()),
        submitted_by: None,
    }
}

fn notices() -> Vec<Notice> {
    vec![
        Notice::Load(LoadReport {
            node_id: "node-a".into(),
            incarnation: 7,
            queued: [1, 2, 3],
            delayed: 4,
            busy: 2,
            workers: 2,
            capacity: 100,
            received_total: 99,
            labels: vec!["gpu".into()],
            draining: false,
            admitting: 3,
            unserved: vec!["py_square".into()],
        }),
        Notice::Leaving {
            node_id: "node-a".into(),
        },
    ]
}

fn requests() -> Vec<Request> {
    vec![
        Request::Hello(hello()),
        Request::Dispatch {
            from: "node-b".into(),
            tasks: vec![DispatchedTask {
                id: TaskId::generate(),
                spec: spec().into(),
                attempts: 1,
                recovered: true,
                lease: 3,
            }],
        },
        Request::Cancel(TaskId::generate()),
    ]
}

fn replies() -> Vec<Reply> {
    vec![
        Reply::Welcome(hello()),
        Reply::Accepted { count: 3 },
        Reply::Refused {
            reason: "draining".into(),
        },
        Reply::Cancel(CancelFound::Dequeued),
        Reply::Cancel(CancelFound::Signalled),
        Reply::Cancel(CancelFound::NotHere),
    ]
}

#[test]
fn every_notice_round_trips_through_the_serialized_form() {
    for notice in notices() {
        let wire = PeerMessage::Notice(notice.clone()).serialize().unwrap();
        match PeerMessage::deserialize(wire).unwrap() {
            PeerMessage::Notice(back) => assert_eq!(back, notice),
            other => panic!("expected a notice, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn every_request_and_reply_round_trips_and_the_reply_reaches_the_caller() {
    for request in requests() {
        for reply in replies() {
            let (tx, rx) = ractor::concurrency::oneshot();
            let port = RpcReplyPort::from((tx, Duration::from_secs(5)));
            let wire = PeerMessage::Request(request.clone(), port)
                .serialize()
                .unwrap();
            let PeerMessage::Request(back, port) = PeerMessage::deserialize(wire).unwrap() else {
                panic!("expected a request");
            };
            assert_eq!(back, request);
            port.send(reply.clone()).unwrap();
            let got = tokio::time::timeout(Duration::from_secs(5), rx)
                .await
                .expect("the reply arrives")
                .expect("the port is not dropped");
            assert_eq!(got, reply);
        }
    }
}

#[test]
fn variant_names_are_the_stable_contract() {
    // Renaming a variant or field breaks older peers: these bytes must keep decoding.
    let bytes = encode(&Notice::Leaving {
        node_id: "n".into(),
    })
    .unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("Leaving") && text.contains("node_id"),
        "{text}"
    );
    let bytes = encode(&Reply::Accepted { count: 1 }).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("Accepted") && text.contains("count"),
        "{text}"
    );
}

#[test]
fn an_older_peer_ignores_fields_it_does_not_know() {
    #[derive(Serialize)]
    struct NewerNodeInfo<'a> {
        node_id: &'a str,
        generation: u64,
        cluster_address: &'a str,
        http_address: &'a str,
        labels: Vec<String>,
        zone: &'a str,
    }
    let bytes = encode(&NewerNodeInfo {
        node_id: "a",
        generation: 1,
        cluster_address: "x:1",
        http_address: "x:2",
        labels: vec![],
        zone: "eu-1",
    })
    .unwrap();
    let info: NodeInfo = decode(&bytes).unwrap();
    assert_eq!(info.node_id, "a");
    // Nor does it send `kinds` (they came later): it advertises none.
    assert!(info.kinds.is_empty());
}

#[test]
fn a_dispatched_task_from_an_older_peer_has_lease_token_zero() {
    #[derive(Serialize)]
    struct OlderDispatchedTask {
        id: TaskId,
        spec: TaskSpec,
        attempts: u32,
        recovered: bool,
    }
    let id = TaskId::generate();
    let bytes = encode(&OlderDispatchedTask {
        id,
        spec: spec(),
        attempts: 2,
        recovered: true,
    })
    .unwrap();
    let task: DispatchedTask = decode(&bytes).unwrap();
    assert_eq!(
        task,
        DispatchedTask {
            id,
            spec: spec().into(),
            attempts: 2,
            recovered: true,
            lease: 0,
        }
    );
}

#[test]
fn garbage_is_refused_and_counted() {
    let before = decode_failures();
    let garbage = SerializedMessage::Cast {
        variant: NOTICE.to_owned(),
        args: vec![0xc1, 0xff, 0x00, 0x13],
        metadata: None,
    };
    assert!(PeerMessage::deserialize(garbage).is_err());
    let unknown = SerializedMessage::Cast {
        variant: "something-else".to_owned(),
        args: encode(&notices()[1]).unwrap(),
        metadata: None,
    };
    assert!(PeerMessage::deserialize(unknown).is_err());
    assert!(decode_failures() >= before + 2);
}

#[tokio::test]
async fn a_reply_that_does_not_decode_leaves_the_caller_to_its_timeout() {
    let (tx, rx) = ractor::concurrency::oneshot::<Reply>();
    let port = RpcReplyPort::from((tx, Duration::from_millis(200)));
    let wire = PeerMessage::Request(requests()[2].clone(), port)
        .serialize()
        .unwrap();
    let SerializedMessage::Call { reply, .. } = wire else {
        panic!("expected a call");
    };
    reply.send(vec![0xc1, 0xc1]).unwrap();
    // The caller's side drops the undecodable bytes: its port closes without a value.
    assert!(rx.await.is_err());
}

#[test]
fn a_heartbeat_round_trips_and_a_tick_never_leaves_the_node() {
    let beat = Heartbeat {
        from: "node-a".into(),
        seq: u64::MAX,
    };
    let wire = HeartbeatMessage::Beat(beat.clone()).serialize().unwrap();
    let SerializedMessage::Cast { variant, args, .. } = &wire else {
        panic!("a heartbeat is a cast");
    };
    assert_eq!(variant, HEARTBEAT);
    let text = String::from_utf8_lossy(args);
    assert!(text.contains("from") && text.contains("seq"), "{text}");
    match HeartbeatMessage::deserialize(wire).unwrap() {
        HeartbeatMessage::Beat(back) => assert_eq!(back, beat),
        other => panic!("expected a heartbeat, got {other:?}"),
    }
    assert!(HeartbeatMessage::Tick.serialize().is_err());
}

#[test]
fn a_heartbeat_actor_refuses_endpoint_messages_and_garbage() {
    let before = decode_failures();
    let notice = PeerMessage::Notice(notices()[1].clone())
        .serialize()
        .unwrap();
    assert!(HeartbeatMessage::deserialize(notice).is_err());
    let garbage = SerializedMessage::Cast {
        variant: HEARTBEAT.to_owned(),
        args: vec![0xc1],
        metadata: None,
    };
    assert!(HeartbeatMessage::deserialize(garbage).is_err());
    assert!(decode_failures() >= before + 2);
}
