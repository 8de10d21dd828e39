//! The SoftwareProduct CRD: the committed YAML is current, is a valid apiextensions/v1 object
//! (real `kubernetes-validate`), has a structural schema, and accepts the DESIGN §4 example.

use jobcarbon_kube::{SoftwareProduct, crd_yaml};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn committed_path() -> PathBuf {
    workspace_root().join("deploy/crds/softwareproducts.jobcarbon.io.yaml")
}

fn generated() -> String {
    crd_yaml().unwrap_or_else(|e| panic!("render CRD: {e}"))
}

#[test]
fn committed_crd_is_current() {
    let path = committed_path();
    let committed =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        committed == generated(),
        "{} is stale: regenerate it with `cargo run -p jobcarbon -- crd > deploy/crds/softwareproducts.jobcarbon.io.yaml`",
        path.display()
    );
}

/// `kubernetes-validate` from PATH, else from the workspace's `.tools/bin`
/// (scripts/install-tools.sh puts it there).
fn kubernetes_validate() -> PathBuf {
    let name = "kubernetes-validate";
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([workspace_root().join(".tools/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} not found on PATH or in .tools/bin: run scripts/install-tools.sh")
        })
}

fn validate(file: &Path) -> std::process::Output {
    Command::new(kubernetes_validate())
        .args(["--strict", "-k", "1.30.0"])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("run kubernetes-validate: {e}"))
}

#[test]
fn crd_validates_with_kubernetes_validate() {
    let out = validate(&committed_path());
    assert!(
        out.status.success(),
        "kubernetes-validate rejected the CRD:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The tool really checks: a CRD with an unknown field and a bad scope type is rejected.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let broken = dir.path().join("broken.yaml");
    let text = generated().replace("  scope: Cluster\n", "  scope: [Cluster]\n  scoped: yes\n");
    std::fs::write(&broken, text).unwrap_or_else(|e| panic!("{e}"));
    assert!(!validate(&broken).status.success());
}

fn crd_json() -> Value {
    use kube::CustomResourceExt;
    serde_json::to_value(SoftwareProduct::crd()).unwrap_or_else(|e| panic!("{e}"))
}

fn schema() -> Value {
    crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Kubernetes requires structural schemas: every node has a type, no `$ref`, no
/// `additionalProperties` beside `properties`.
fn assert_structural(node: &Value, at: &str) {
    assert!(node.get("$ref").is_none(), "{at}: $ref");
    assert!(
        node.get("type").and_then(Value::as_str).is_some(),
        "{at}: no type"
    );
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        assert!(node.get("additionalProperties").is_none(), "{at}: both");
        for (name, child) in props {
            assert_structural(child, &format!("{at}.{name}"));
        }
    }
    if let Some(items) = node.get("items") {
        assert_structural(items, &format!("{at}[]"));
    }
}

#[test]
fn schema_is_structural_with_the_issue_names() {
    let crd = crd_json();
    let spec = &crd["spec"];
    assert_eq!(spec["group"], "jobcarbon.io");
    assert_eq!(spec["scope"], "Cluster");
    assert_eq!(spec["names"]["shortNames"][0], "sp");
    let version = &spec["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, ["Type", "EPC", "Lifetime", "Age"]);
    assert_structural(&schema(), "openAPIV3Schema");
}

/// Check a value against the subset of OpenAPI the CRD uses (type, required, properties,
/// enum, items, minimum/maximum) as the API server would; unknown fields are an error here
/// because the server would prune them silently.
fn check(schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if value.is_null() && schema["nullable"] == true {
        return Ok(());
    }
    let ty = schema["type"].as_str().unwrap_or_default();
    let ok = match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        "boolean" => value.is_boolean(),
        _ => true,
    };
    if !ok {
        return Err(format!("{at}: expected {ty}, got {value}"));
    }
    if let Some(choices) = schema["enum"].as_array()
        && !choices.contains(value)
    {
        return Err(format!("{at}: {value} not in {choices:?}"));
    }
    if let Some(n) = value.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|m| n < m) {
            return Err(format!("{at}: {n} below minimum"));
        }
        if schema["maximum"].as_f64().is_some_and(|m| n > m) {
            return Err(format!("{at}: {n} above maximum"));
        }
    }
    if let Some(obj) = value.as_object() {
        let props = schema["properties"].as_object();
        for required in schema["required"].as_array().into_iter().flatten() {
            let key = required.as_str().unwrap_or_default();
            if !obj.contains_key(key) {
                return Err(format!("{at}: missing {key}"));
            }
        }
        for (key, child) in obj {
            let Some(child_schema) = props.and_then(|p| p.get(key)) else {
                if at == "" && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                return Err(format!("{at}.{key}: unknown field"));
            };
            check(child_schema, child, &format!("{at}.{key}"))?;
        }
    }
    if let Some(items) = value.as_array() {
        for (i, item) in items.iter().enumerate() {
            check(&schema["items"], item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

fn object(yaml: &str) -> Value {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn design_example_is_accepted_by_the_schema_and_the_type() {
    let example = object(
        "apiVersion: jobcarbon.io/v1alpha1\nkind: SoftwareProduct\nmetadata: {name: distilbert}\n\
         spec:\n  type: model\n  lifetime: 3y\n\
         \x20 derivedFrom: [{product: bert-base, weight: 0.1}]\n\
         \x20 datasets: [{product: wikipedia-en, weight: 0.5}]\n\
         \x20 declared: {carbon: 552kg, source: \"model card\"}\n\
         \x20 inference: {requests: {preset: vllm}}\n\
         \x20 retraining: {amortizeOver: 24h}\n\
         status:\n  epc: {totalGrams: 1.5, measuredGrams: 1, inheritedGrams: 0.5, declaredGrams: 0, updatedAt: '2024-06-11T09:30:00Z'}\n",
    );
    check(&schema(), &example, "").unwrap_or_else(|e| panic!("{e}"));
    let typed: SoftwareProduct = serde_json::from_value(example).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(typed.spec.lifetime, "3y");
    assert!(typed.spec.to_def("distilbert").is_ok());
}

#[test]
fn schema_rejects_what_the_api_server_would() {
    let base = "apiVersion: jobcarbon.io/v1alpha1\nkind: SoftwareProduct\nmetadata: {name: m}\n";
    for (spec, why) in [
        ("spec: {type: model}\n", "missing lifetime"),
        ("spec: {type: network, lifetime: 3y}\n", "bad enum"),
        (
            "spec: {type: model, lifetime: 3y, derivedFrom: [{product: a, weight: 2}]}\n",
            "weight > 1",
        ),
        (
            "spec: {type: model, lifetime: 3y, lifetme: 2y}\n",
            "unknown field",
        ),
        (
            "spec: {type: model, lifetime: 3}\n",
            "lifetime not a string",
        ),
    ] {
        let value = object(&format!("{base}{spec}"));
        assert!(check(&schema(), &value, "").is_err(), "{why}");
    }
}
