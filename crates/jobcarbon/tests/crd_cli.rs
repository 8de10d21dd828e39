//! `jobcarbon crd` prints exactly the committed CRD.

use assert_cmd::Command;

#[test]
fn crd_subcommand_prints_the_committed_crd() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/crds/softwareproducts.jobcarbon.io.yaml"
    );
    let committed = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let out = Command::cargo_bin("jobcarbon")
        .unwrap_or_else(|e| panic!("{e}"))
        .arg("crd")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), committed);
}
