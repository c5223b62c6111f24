//! The layout's rules, read from the source: layers (`src/*.rs`) never import `cli` or a
//! command, commands never import each other, and the layers' imports have no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The `crate::` modules a file names, e.g. `use crate::{aws, keys}` or `crate::error::usage`.
fn imports(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut found = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        let names = match rest.strip_prefix('{') {
            Some(group) => group.split('}').next().unwrap_or_default(),
            None => rest.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap(),
        };
        for name in names.split(',') {
            let name = name.trim().split("::").next().unwrap_or_default();
            if !name.is_empty() {
                found.insert(name.to_string());
            }
        }
    }
    found
}

fn modules(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), imports(&p)))
        .collect()
}

#[test]
fn layers_never_import_the_cli_or_a_command_and_have_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut layers = modules(&src);
    for top in ["main", "lib", "cli"] {
        layers.remove(top);
    }
    assert!(layers.len() >= 10, "{layers:?}");
    for (layer, uses) in &layers {
        assert!(!uses.contains("cli") && !uses.contains("cmd"), "{layer} imports {uses:?}");
    }
    for (command, uses) in modules(&src.join("cmd")) {
        assert!(!uses.contains("cmd"), "cmd/{command} imports another command: {uses:?}");
    }
    // Kahn's algorithm: peel off layers whose imports are all peeled; what is left is a cycle.
    let mut left = layers.clone();
    while let Some(free) = left
        .iter()
        .find(|(_, uses)| uses.iter().all(|u| !left.contains_key(u)))
        .map(|(name, _)| name.clone())
    {
        left.remove(&free);
    }
    assert!(left.is_empty(), "an import cycle among {:?}", left.keys());
}

#[test]
fn only_say_writes_to_stderr_and_bottom_layers_stay_at_the_bottom() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = std::fs::read_dir(&src)
        .unwrap()
        .chain(std::fs::read_dir(src.join("cmd")).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"));
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy();
        // What eic tells the user goes through one funnel, which owns the `eic: ` prefix.
        if name != "say.rs" {
            assert!(!text.contains("eprintln!") && !text.contains("eprint!"), "{name} prints");
        }
        // stdout is the SSH stream in proxy mode: only commands write to it.
        if path.parent() == Some(src.as_path()) {
            let stdout = text.matches("println!(").count() - text.matches("eprintln!(").count();
            assert_eq!(stdout, 0, "{name} writes to stdout");
        }
    }
    // The bottom: error codes, the funnel and private files import no other layer but these.
    let layers = modules(&src);
    for (bottom, allowed) in [("error", &[][..]), ("say", &[][..]), ("private", &["error"][..])] {
        let uses = &layers[bottom];
        assert!(uses.iter().all(|u| allowed.contains(&u.as_str())), "{bottom} imports {uses:?}");
    }
}
