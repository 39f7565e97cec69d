//! The architecture, checked: which crate may depend on which, and inside the service which
//! folder may use which. Both tables live in the README's "Architecture" section, and this test
//! reads them from there, so a change that adds an arrow has to add it to the README too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The rows of the README table that follows `marker`: first cell → names in the second cell.
fn readme_table(marker: &str) -> BTreeMap<String, BTreeSet<String>> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let start = readme.find(marker).unwrap_or_else(|| panic!("README has no line with {marker:?}"));
    let mut rows = BTreeMap::new();
    let mut in_table = false;
    for line in readme[start..].lines().skip(1) {
        let line = line.trim();
        if !line.starts_with('|') {
            if in_table {
                break;
            }
            continue;
        }
        in_table = true;
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() < 2 || cells[0].starts_with("---") || cells[0].eq_ignore_ascii_case("crate") {
            continue;
        }
        if cells[0].eq_ignore_ascii_case("folder") {
            continue;
        }
        // The names are the cell's `quoted` words; the rest is explanation.
        let names = |cell: &str| -> BTreeSet<String> {
            cell.split('`').skip(1).step_by(2).map(str::to_string).filter(|s| !s.is_empty()).collect()
        };
        for name in names(cells[0]) {
            rows.insert(name, names(cells[1]));
        }
    }
    assert!(!rows.is_empty(), "README table after {marker:?} is empty");
    rows
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `crate::name` a file's code (not its comments) refers to.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        // Comments (whole-line, or trailing after whitespace) are not code.
        let code = line.trim_start();
        let code = match code.find(" //") {
            Some(i) => &code[..i],
            None if code.starts_with("//") => continue,
            None => code,
        };
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().last();
            rest = &rest[i + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // `ferric_crate::` and the like
            }
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

#[test]
fn service_folders_use_only_what_the_readme_table_allows() {
    let table = readme_table("<!-- service layers -->");
    let service = root().join("src/service");
    let mut files = Vec::new();
    rust_files(&service, &mut files);
    let mut violations = Vec::new();
    let mut seen_modules = BTreeSet::new();
    for f in files {
        let rel = f.strip_prefix(&service).expect("under src/service");
        let first = rel.components().next().expect("component").as_os_str().to_string_lossy().to_string();
        let module = first.trim_end_matches(".rs").to_string();
        // The crate root, and the build script (not a module of the crate).
        if module == "lib" || module == "build" {
            continue;
        }
        seen_modules.insert(module.clone());
        let Some(allowed) = table.get(&module) else {
            violations.push(format!("{}: module `{module}` has no row in the README's table", rel.display()));
            continue;
        };
        let text = std::fs::read_to_string(&f).expect("read");
        for used in crate_refs(&text) {
            if used != module && !allowed.contains(&used) && !allowed.contains("*") {
                violations.push(format!("{}: `{module}` uses `crate::{used}`", rel.display()));
            }
        }
    }
    for m in table.keys() {
        assert!(seen_modules.contains(m), "the README's table names `{m}`, which src/service does not have");
    }
    assert!(violations.is_empty(), "imports outside the README's layer table:\n{}", violations.join("\n"));
}

/// Package name → the ferric crates it depends on (normal dependencies), from `cargo metadata`.
fn ferric_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let mut map = BTreeMap::new();
    for p in v["packages"].as_array().expect("packages") {
        let name = p["name"].as_str().expect("name").to_string();
        let deps: BTreeSet<String> = p["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|d| d["kind"].is_null())
            .filter_map(|d| d["name"].as_str())
            .filter(|n| n.starts_with("ferric"))
            .map(str::to_string)
            .collect();
        map.insert(name, deps);
    }
    map
}

#[test]
fn crates_depend_only_along_the_readme_arrows() {
    let table = readme_table("<!-- crate arrows -->");
    let actual = ferric_dependencies();
    for (krate, deps) in &actual {
        let allowed = table.get(krate).unwrap_or_else(|| panic!("crate {krate} has no row in the README's table"));
        let extra: Vec<_> = deps.difference(allowed).collect();
        assert!(extra.is_empty(), "{krate} depends on {extra:?}, which the README's arrows do not allow");
    }
    for k in table.keys() {
        assert!(actual.contains_key(k), "the README names crate {k}, which the workspace does not have");
    }
}

/// `cargo tree` of one package's normal dependencies, with their features.
fn tree(package: &str, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--locked", "-e", "normal,features", "--prefix", "none", "-p", package])
        .args(extra)
        .current_dir(root())
        .output()
        .expect("cargo tree");
    assert!(out.status.success(), "cargo tree -p {package}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn production_trees_hold_no_simulator_no_test_clock_and_no_scratch_files() {
    for package in ["ferric-service", "ferric-agent", "ferric-types", "ferric-disk"] {
        let t = tree(package, &[]);
        for bad in ["ferric-sim ", "ferric-lab ", "tempfile ", "tokio feature \"test-util\""] {
            assert!(!t.contains(bad), "cargo tree -p {package} -e normal lists {bad:?}");
        }
    }
    let agent = tree("ferric-agent", &[]);
    for bad in ["rusqlite ", "ferric-service "] {
        assert!(!agent.contains(bad), "the agent's tree lists {bad:?}");
    }
    let production = tree("ferric", &["--no-default-features"]);
    for bad in ["ferric-sim ", "ferric-lab ", "tempfile ", "tokio feature \"test-util\""] {
        assert!(!production.contains(bad), "ferric --no-default-features lists {bad:?}");
    }
}

#[test]
fn the_readme_tables_parse() {
    assert!(readme_table("<!-- crate arrows -->").contains_key("ferric-types"));
    assert!(readme_table("<!-- service layers -->").contains_key("api"));
    assert_eq!(
        crate_refs("use crate::db::Db; // crate::api\n// crate::x\nlet a = ferric_crate::y;"),
        ["db".to_string()].into()
    );
}
