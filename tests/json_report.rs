//! `--json`: one machine-readable report on stdout, for scripts and cron (schema in README).

mod support;

use serde_json::Value;
use support::{jr, sample_jex, text};

fn report(args: &[&str]) -> (i32, Value) {
    let o = jr(args);
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{}", text(&o)));
    (o.status.code().unwrap(), v)
}

#[test]
fn restore_verify_and_errors_report_as_documented() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("target");
    let jex = sample_jex();
    let (code, v) = report(&[
        "restore",
        jex.to_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0);
    assert_eq!(v["command"], "restore");
    assert_eq!(v["ok"], true);
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["uploaded"], 30);
    assert_eq!(v["uploaded_bytes"], 219114);
    assert_eq!(v["deleted"], 0);
    assert_eq!(v["retries"], 0);
    assert!(v["requests"].as_u64().unwrap() >= 30);
    assert_eq!(v["verify"]["checked_items"], 27);
    assert_eq!(v["verify"]["differences"].as_array().unwrap().len(), 0);
    let stages: Vec<&str> = v["timings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        ["read and validate", "plan", "snapshot", "write", "verify"]
    );

    std::fs::remove_file(t.join("2ebc0432f27d42fdb982a925c8734636.md")).unwrap();
    let (code, v) = report(&[
        "verify",
        jex.to_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 3);
    assert_eq!(v["ok"], false);
    let d = &v["report"]["differences"][0];
    assert_eq!(d["kind"], "missing");
    assert_eq!(d["id"], "2ebc0432f27d42fdb982a925c8734636");

    let (code, v) = report(&[
        "restore",
        "/nonexistent.jex",
        "--target",
        t.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 1);
    assert_eq!(v["command"], "restore");
    assert!(v["error"].as_str().unwrap().contains("/nonexistent.jex"));
}

#[test]
fn refusals_report_exit_4_and_inspect_lists_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.jex");
    let mut b = tar::Builder::new(Vec::new());
    let item = "T\n\nid: 0000000000000000000000000000000a\nparent_id: 99999999999999999999999999999999\ntype_: 1";
    let mut h = tar::Header::new_ustar();
    h.set_size(item.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(
        &mut h,
        "0000000000000000000000000000000a.md",
        item.as_bytes(),
    )
    .unwrap();
    std::fs::write(&bad, b.into_inner().unwrap()).unwrap();
    let (code, v) = report(&["inspect", bad.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    assert_eq!(v["problems"][0]["class"], "missing-parent");
    assert_eq!(v["counts"]["notes"], 1);
    let t = tmp.path().join("t");
    let (code, v) = report(&[
        "restore",
        bad.to_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 4);
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("--allow missing-parent"));
}
