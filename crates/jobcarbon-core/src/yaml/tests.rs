//! The fast path agrees with serde-saphyr wherever it answers, and answers for plain files.

use super::{fast, from_str, from_str_serde_saphyr};
use crate::scenario::ScenarioDoc;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Fast path and serde-saphyr read `text` alike: the fast path gives up or agrees, and
/// `from_str` gives serde-saphyr's answer. True if the fast path answered.
#[track_caller]
fn agrees(what: &str, text: &str) -> bool {
    let reference = from_str_serde_saphyr::<Value>(text).map_err(|e| e.error.to_string());
    let fast = fast::try_from_str::<Value>(text);
    if let Some(value) = &fast {
        assert_eq!(Ok(value), reference.as_ref(), "{what}: fast path differs");
    }
    let combined = from_str::<Value>(text).map_err(|e| e.error.to_string());
    assert_eq!(combined, reference, "{what}");
    fast.is_some()
}

#[test]
fn plain_documents_take_the_fast_path_and_agree() {
    for text in [
        "a: 1\nb: [x, 2, -3, 0.5, 1e3, true, false, ~, null, '', \"q\"]\n",
        "jobs:\n  - {name: a, power: 700W, devices: 4, duration: 3600s, share: 0.5}\n",
        "m: {k: v, nested: {deep: [1, [2, [3]]]}}\n",
        "empty: {}\n",
        "none: []\n",
        "blank:\n",
        "text: |\n  two\n  lines\nfolded: >\n  one\n  line\n",
        "# a comment\nkey: value # trailing\n",
        "---\nexplicit: start\n...\n",
        "'quoted key': \"yes\"\n\"0x1F\": \"010\"\n",
        "- 1\n- two\n- 3.5\n",
        "plain",
        "unicode: \"\\u00e9t\\u00e9\"\nraw: été\n",
    ] {
        assert!(agrees(text, text), "{text:?} should take the fast path");
    }
}

#[test]
fn everything_else_is_left_to_serde_saphyr() {
    for text in [
        "base: &b {x: 1}\nother: *b\n",
        "base: &b {x: 1}\nother: {<<: *b, y: 2}\n",
        "tagged: !!str 12\n",
        "custom: !thing {a: 1}\n",
        "flags: [yes, No, on, OFF, y, True]\n",
        "numbers: [0x1F, 0o17, 010, 1_000, 1:30, +5, .5, 5., .inf, -.inf, .nan]\n",
        "date: 2026-12-01\n",
        "dup: 1\ndup: 2\n",
        "outer: {a: 1, a: 2}\n",
        "1: numeric key\n",
        "true: boolean key\n",
        "",
        "# only a comment\n",
        "a: 1\n---\nb: 2\n",
        "%YAML 1.1\n---\na: 1\n",
        "bad: {unclosed: 1\nnext: 2\n",
        "big: 99999999999999999999\n",
        "huge: 1e999\n",
    ] {
        assert!(
            !agrees(text, text),
            "{text:?} should be left to serde-saphyr"
        );
    }
    let deep = format!("{}1{}", "[".repeat(60), "]".repeat(60));
    assert!(!agrees("60 levels", &deep));
}

#[test]
fn typed_targets_agree() {
    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct T {
        count: u32,
        ratio: f64,
        name: String,
        flag: bool,
        maybe: Option<String>,
        kind: Kind,
        #[serde(default)]
        list: Vec<i64>,
    }
    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Model,
        Dataset,
    }
    let ok = "count: 3\nratio: 2\nname: 123\nflag: true\nmaybe: ~\nkind: dataset\nlist: [-1, 2]\n";
    let fast = fast::try_from_str::<T>(ok);
    assert!(fast.is_some());
    assert_eq!(fast, from_str_serde_saphyr::<T>(ok).ok());
    for bad in [
        "count: -3\nratio: 2\nname: a\nflag: true\nkind: model\n",
        "count: 3.5\nratio: 2\nname: a\nflag: true\nkind: model\n",
        "count: 3\nratio: 2\nname: ~\nflag: true\nkind: model\n",
        "count: 3\nratio: 2\nname: a\nflag: yes\nkind: model\n",
        "count: 3\nratio: 2\nname: a\nflag: true\nkind: modle\n",
        "count: 3\nratio: 2\nname: a\nflag: true\nkind: model\ncolour: 1\n",
    ] {
        assert!(fast::try_from_str::<T>(bad).is_none(), "{bad}");
        let located = from_str::<T>(bad).map_err(|e| e.error.to_string());
        let reference = from_str_serde_saphyr::<T>(bad).map_err(|e| e.error.to_string());
        assert_eq!(located, reference, "{bad}");
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every YAML file in the repository (Helm templates are not YAML until rendered).
fn repo_yaml_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(
                    name.as_str(),
                    "target" | ".git" | "templates" | "node_modules"
                ) {
                    walk(&path, out);
                }
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo_root(), &mut out);
    out.sort();
    out
}

#[test]
fn every_yaml_file_in_the_repository_reads_alike() {
    let files = repo_yaml_files();
    assert!(files.len() > 20, "found {files:?}");
    let mut fast = 0;
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        fast += usize::from(agrees(&file.display().to_string(), &text));
    }
    assert!(
        fast * 2 > files.len(),
        "{fast} of {} took the fast path",
        files.len()
    );
}

#[test]
fn example_scenarios_take_the_fast_path_into_the_same_document() {
    for name in ["examples/paper.yaml", "examples/lifecycle.yaml"] {
        let text = std::fs::read_to_string(repo_root().join(name)).unwrap_or_default();
        let fast = fast::try_from_str::<ScenarioDoc>(&text);
        assert!(fast.is_some(), "{name}");
        assert_eq!(
            fast,
            from_str_serde_saphyr::<ScenarioDoc>(&text).ok(),
            "{name}"
        );
    }
}

mod generated {
    use super::agrees;
    use proptest::prelude::*;

    /// Scalars near the edges of YAML's typing: numbers, bools, nulls and text that looks like
    /// them, plus random text over the characters those spellings use.
    fn scalar() -> impl Strategy<Value = String> {
        let tricky = prop::sample::select(vec![
            "0",
            "-0",
            "00",
            "07",
            "1",
            "-1",
            "+1",
            "1.5",
            "-1.5",
            "1.",
            ".5",
            "1e3",
            "1E-3",
            "1e",
            "0x1F",
            "0o7",
            "0b1",
            "1_0",
            "1:2",
            ".inf",
            "-.inf",
            ".nan",
            "inf",
            "nan",
            "true",
            "false",
            "True",
            "yes",
            "no",
            "on",
            "off",
            "y",
            "n",
            "~",
            "null",
            "Null",
            "NULL",
            "",
            "700W",
            "5m",
            "1d",
            "10.3t",
            "120g/h",
            "-3y",
            "2 kg",
            "a b",
            "x",
            "'q'",
            "\"1\"",
            "\"\"",
            "''",
            "2026-12-01",
            "18446744073709551616",
            "1e999",
        ])
        .prop_map(str::to_owned);
        let random = "[0-9a-zA-Z.+_:~ -]{0,6}";
        prop_oneof![tricky, random]
    }

    fn document() -> impl Strategy<Value = (String, String)> {
        (
            prop::collection::vec(("[a-z]{1,3}", scalar()), 0..6),
            prop::collection::vec(scalar(), 0..6),
        )
            .prop_map(|(pairs, items)| {
                let mut block = String::new();
                let mut flow = Vec::new();
                for (key, value) in &pairs {
                    block.push_str(&format!("{key}: {value}\n"));
                    flow.push(format!("{key}: {value}"));
                }
                block.push_str(&format!("list: [{}]\n", items.join(", ")));
                let flow = format!("{{{}, list: [{}]}}", flow.join(", "), items.join(", "));
                (block, flow)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Wherever the fast path answers, it answers as serde-saphyr does.
        #[test]
        fn the_fast_path_never_disagrees((block, flow) in document()) {
            agrees(&block, &block);
            agrees(&flow, &flow);
        }
    }
}
