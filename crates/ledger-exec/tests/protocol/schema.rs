//! `fixtures/protocol/schema.json` describes every message the harness and the reference's
//! server exchange: a session of every request kind, every call and every error, driven
//! through `serve`, is validated line by line; and the definitions it shares with the
//! conformance schema are the same.

use std::path::Path;

use ledger_core::{Config, ConfigJson, PaymentId, RequestId, Sats, Tier, TimeMs};
use ledger_exec::protocol::{Request, RequestBody, PROTOCOL_VERSION};
use ledger_harness::Call;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn schema(path: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(root().join(path)).expect("the schema is committed");
    serde_json::from_str(&text).expect("the schema is JSON")
}

/// Every request kind, every call, and lines the server must answer with errors.
fn session() -> String {
    let config = ConfigJson::from(Config::default());
    let sats = |v| Sats::new(v).expect("in range");
    let pubkey = ledger_harness::user_pubkey(7);
    let mut lines = Vec::new();
    let mut push = |id: u64, body: RequestBody| lines.push(serde_json::to_string(&Request { id, body }).unwrap());
    push(0, RequestBody::Hello { protocol: PROTOCOL_VERSION, config });
    push(1, RequestBody::Reset { config });
    let calls = [
        Call::SetTier { pubkey, tier: Tier::Elite },
        Call::Decide { request_id: RequestId(1), pubkey, estimated_sats: sats(100) },
        Call::Decide { request_id: RequestId(1), pubkey, estimated_sats: sats(100) },
        Call::Record { request_id: RequestId(1), pubkey, actual_sats: sats(60), reserved_sats: sats(100) },
        Call::Decide { request_id: RequestId(2), pubkey, estimated_sats: sats(5000) },
        Call::ReservePartial { request_id: RequestId(2), pubkey, amount_sats: sats(900) },
        Call::ReservePartial { request_id: RequestId(2), pubkey, amount_sats: sats(3) },
        Call::Release { request_id: RequestId(2), amount_sats: sats(900) },
        Call::Release { request_id: RequestId(9), amount_sats: sats(0) },
        Call::Credit { payment_id: PaymentId(1), paid_sats: sats(1234) },
        Call::Credit { payment_id: PaymentId(1), paid_sats: sats(1) },
        Call::Decide { request_id: RequestId(3), pubkey, estimated_sats: sats(10) },
        Call::Expire,
    ];
    for (i, call) in calls.into_iter().enumerate() {
        let id = 2 + i as u64;
        push(id, RequestBody::Call { now_ms: TimeMs(1_700_000_000_000 + id), call: call.clone() });
        push(100 + id, RequestBody::Observe);
    }
    push(200, RequestBody::Call { now_ms: TimeMs(1_700_000_700_000), call: Call::Expire });
    push(201, RequestBody::Hello { protocol: 9, config });
    lines.push(r#"{"id":202,"type":"call","now_ms":1,"call":{"call":"credit","payment_id":1,"paid_sats":-1}}"#.into());
    lines.join("\n") + "\n"
}

#[test]
fn every_message_of_a_session_is_valid() {
    let validator = jsonschema::validator_for(&schema("fixtures/protocol/schema.json")).expect("a valid JSON Schema");
    let input = session();
    let mut output = Vec::new();
    ledger_exec::serve::serve(input.as_bytes(), &mut output, &mut std::io::sink()).unwrap();
    let output = String::from_utf8(output).unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for line in input.lines().filter(|l| !l.contains("-1")).chain(output.lines()) {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&value).map(|e| format!("{e} at {}", e.instance_path)).collect();
        assert!(errors.is_empty(), "{line}: {errors:?}");
        kinds.insert(value["type"].as_str().unwrap().to_owned());
        if let Some(r) = value.get("reply") {
            kinds.insert(format!("{}:{}", r["reply"], r.get("outcome").or(r.get("refusal")).unwrap()));
        }
    }
    for kind in ["hello", "hello_ok", "reset", "reset_ok", "call", "observe", "observed", "error", "reply"] {
        assert!(kinds.contains(kind), "the session has a {kind}: {kinds:?}");
    }
    // What the schema refuses: a negative amount, a definite timeout, an unknown call.
    for bad in [
        r#"{"id":202,"type":"call","now_ms":1,"call":{"call":"credit","payment_id":1,"paid_sats":-1}}"#,
        r#"{"id":3,"type":"error","code":"timeout","definite":true}"#,
        r#"{"id":3,"type":"call","now_ms":1,"call":{"call":"teleport"}}"#,
        r#"{"id":3,"type":"hello_ok","protocol":1,"api":"seed","clock":"wall","state":"memory"}"#,
    ] {
        let value: serde_json::Value = serde_json::from_str(bad).unwrap();
        assert!(!validator.is_valid(&value), "the schema must refuse {bad}");
    }
}

#[test]
fn the_shared_definitions_are_the_conformance_schemas() {
    let protocol = schema("fixtures/protocol/schema.json");
    let conformance = schema("fixtures/conformance/schema.json");
    for def in ["sats", "id", "time_ms", "pubkey", "tier", "config", "decision", "outcome", "refusal"] {
        assert_eq!(protocol["$defs"][def], conformance["$defs"][def], "$defs/{def} differs between the two schemas");
    }
}

/// A reply's `reply` object is the trace format's `expect` object, an outcome or a refusal of
/// the conformance schema, with one more key, `reply`: `"ok"` for an outcome and `"refused"` for
/// a refusal (SPEC.md §9.2). The schema's `$defs/reply` is exactly that, variant by variant.
#[test]
fn a_reply_is_an_expect_object_with_a_reply_key() {
    let protocol = schema("fixtures/protocol/schema.json");
    let conformance = schema("fixtures/conformance/schema.json");
    let expect = &conformance["$defs"]["step"]["properties"]["expect"];
    assert_eq!(expect["oneOf"], serde_json::json!([{"$ref": "#/$defs/outcome"}, {"$ref": "#/$defs/refusal"}]));
    let mut derived = Vec::new();
    for (kind, tag) in [("outcome", "ok"), ("refusal", "refused")] {
        for variant in conformance["$defs"][kind]["oneOf"].as_array().unwrap() {
            let mut v = variant.clone();
            v["properties"]["reply"] = serde_json::json!({"const": tag});
            let required = v["required"].as_array_mut().unwrap();
            required.insert(0, "reply".into());
            derived.push(v);
        }
    }
    assert_eq!(protocol["$defs"]["reply"]["oneOf"], serde_json::Value::from(derived));
}
