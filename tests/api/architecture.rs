//! The mechanical invariants of ARCHITECTURE.md, checked on the source tree itself, so a change
//! that breaks one fails here rather than in review.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Fewer files than this means the walk went wrong, and every check below would pass vacuously.
const MIN_SOURCE_FILES: usize = 40;

/// Reading an `Instant` measures a duration and never decides anything by the hub's time; these
/// are the places that time something.
const INSTANT_ALLOWED: &[(&str, &str)] = &[
    (
        "src/delivery/worker.rs",
        "adapter call latency for the metrics histogram",
    ),
    ("src/http/request_log.rs", "request latency in the request log"),
    ("src/bench.rs", "the benchmark's own stopwatch"),
    ("src/bench/receipts.rs", "the benchmark's own stopwatch"),
    ("src/bench/fanout.rs", "the benchmark's own stopwatch"),
    ("src/bench/search.rs", "the benchmark's own stopwatch"),
    (
        "src/simulate.rs",
        "when a virtual device's commands arrive, for the fan-out benchmark",
    ),
    (
        "src/delivery/gateway.rs",
        "how long a batch of reports has waited, and a cached key's age: intervals, not hub time",
    ),
];

#[test]
fn only_src_http_knows_actix_web() {
    let offenders: Vec<_> = sources()
        .iter()
        .filter(|file| !file.path.starts_with("src/http/"))
        .filter(|file| file.code.contains("actix_web") || file.code.contains("actix::"))
        .map(|file| file.path.clone())
        .collect();
    assert!(
        offenders.is_empty(),
        "actix-web used outside src/http: {offenders:?}"
    );
}

#[test]
fn only_the_clock_reads_the_wall_clock() {
    let files = sources();
    let mut offenders = Vec::new();
    for file in &files {
        // `Uuid::now_v7` reads the system clock for the time an id carries.
        for call in ["Utc::now(", "Local::now(", "SystemTime::now(", "Uuid::now_v7("] {
            if file.path != "src/clock.rs" && file.code.contains(call) {
                offenders.push(format!("{}: {call}", file.path));
            }
        }
        let instant_allowed = INSTANT_ALLOWED.iter().any(|(path, _why)| file.path == *path);
        if !instant_allowed && file.code.contains("Instant::now(") {
            offenders.push(format!("{}: Instant::now(", file.path));
        }
    }
    assert!(
        offenders.is_empty(),
        "wall clock read outside src/clock.rs: {offenders:?}"
    );
    let clock = files
        .iter()
        .find(|f| f.path == "src/clock.rs")
        .expect("src/clock.rs");
    assert!(
        clock.code.contains("Utc::now("),
        "the check looks for a call that no longer exists"
    );
}

#[test]
fn modules_under_src_import_each_other_without_circles() {
    let files = sources();
    let graph = import_graph(&files);
    let edge_count: usize = graph.values().map(BTreeSet::len).sum();
    assert!(
        edge_count > 100,
        "only {edge_count} imports found: the parser is broken"
    );
    assert!(
        graph["src/cli.rs"].contains("src/config.rs"),
        "a known import was not found: the parser is broken"
    );
    let circles = circles(&graph);
    assert!(circles.is_empty(), "import circles: {circles:?}");
}

/// The layers from the bottom up: a file imports only from lower layers or from its own
/// top-level module. Each row is one layer.
const LAYERS: &[&[&str]] = &[
    &["error", "secrets"],
    &["config", "domain"],
    &["store", "telemetry"],
    &["clock", "audit"],
    &["device_link"],
    &["hub"],
    &["accounts", "idempotency"],
    &["attachments", "items", "organs"],
    &["delivery"],
    &["workflow", "annual_report"],
    &["portal", "workers", "simulate", "broker"],
    &["startup"],
    &["http"],
    &["bench"],
    &["cli", "lib", "main"],
];

#[test]
fn imports_point_down_the_layers() {
    let files = sources();
    let graph = import_graph(&files);
    let layer_of = |path: &str| {
        let top = module_of(path)
            .into_iter()
            .next()
            .unwrap_or_else(|| "lib".to_owned());
        let top = if path == "src/main.rs" {
            "main".to_owned()
        } else {
            top
        };
        LAYERS
            .iter()
            .position(|layer| layer.contains(&top.as_str()))
            .map(|n| (n, top))
            .unwrap_or_else(|| panic!("{path} is in no layer: add its module to LAYERS"))
    };
    let mut upward = Vec::new();
    for (from, targets) in &graph {
        let (from_layer, from_top) = layer_of(from);
        for to in targets {
            let (to_layer, to_top) = layer_of(to);
            if from_top != to_top && to_layer >= from_layer {
                upward.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that do not point down the layers: {upward:#?}"
    );
}

#[test]
fn the_parser_sees_a_circle_when_there_is_one() {
    let files = vec![
        SourceFile::new(
            "src/a.rs",
            "use crate::{b::Thing, c::{self, h}};\nfn f() { crate::d::g(); }",
        ),
        SourceFile::new("src/b.rs", "pub struct Thing;"),
        SourceFile::new("src/c.rs", "pub fn h() { crate::a::f(); }"),
        SourceFile::new("src/d/mod.rs", "mod e;\npub use e::g;\npub use self::e::g as g2;"),
        SourceFile::new("src/d/e.rs", "use super::super::a;\npub fn g() {}"),
        SourceFile::new(
            "src/f.rs",
            "// use crate::a;\nconst S: &str = \"crate::a\";\n#[cfg(test)]\nmod tests { use crate::a; }",
        ),
    ];
    let graph = import_graph(&files);
    assert_eq!(graph["src/a.rs"], set(&["src/b.rs", "src/c.rs", "src/d/mod.rs"]));
    assert_eq!(graph["src/c.rs"], set(&["src/a.rs"]));
    assert_eq!(graph["src/d/e.rs"], set(&["src/a.rs"]));
    assert!(
        graph["src/f.rs"].is_empty(),
        "comments, strings and tests are no imports"
    );
    assert!(
        graph["src/d/mod.rs"].is_empty(),
        "a mod.rs re-exporting its child is no import"
    );
    assert_eq!(
        circles(&graph),
        vec![vec!["src/a.rs".to_owned(), "src/c.rs".to_owned()]]
    );
}

#[test]
fn transactions_begin_only_in_the_store() {
    let offenders: Vec<_> = sources()
        .iter()
        .filter(|file| file.path != "src/store/mod.rs")
        .filter(|file| file.code.contains("TransactionTrait") || file.code.contains(".begin("))
        .map(|file| file.path.clone())
        .collect();
    assert!(
        offenders.is_empty(),
        "a transaction begun outside store::begin_write: {offenders:?}"
    );
}

#[test]
fn json_bodies_enter_only_through_the_checked_extractor() {
    let offenders: Vec<_> = sources()
        .iter()
        .filter(|file| file.code.contains("web::Json") || file.code.contains("actix_web::web::Json"))
        .map(|file| file.path.clone())
        .collect();
    assert!(
        offenders.is_empty(),
        "actix's unchecked Json extractor used: {offenders:?}"
    );
}

/// Calls that decode stored or received data into a type. What follows one of them decides
/// what a value that does not decode becomes.
const DECODERS: &[&str] = &[
    "try_get_by_index",
    "try_get_by",
    "try_get",
    "try_get_many",
    "from_query_result",
    "serde_json::from_str",
    "serde_json::from_slice",
    "serde_json::from_value",
    "::parse",
];

/// Chained after a decoder, these turn a decode failure into a value the code goes on with.
const DEFAULTING: &[&str] = &[
    "unwrap_or_default",
    "unwrap_or",
    "unwrap_or_else",
    "ok",
    "is_ok_and",
    "is_ok",
];

/// Decodes whose failure is deliberately a value, each with the reason.
const DECODE_DEFAULT_ALLOWED: &[(&str, &str, &str)] = &[
    (
        "src/http/system.rs",
        "serde_json::from_str",
        "an audit entry is evidence: detail that is not JSON is shown as the text the hash covers",
    ),
    (
        "src/http/openapi.rs",
        "serde_json::from_str",
        "the hub's own generated document, not stored data; the tests reading it fail on null",
    ),
];

#[test]
fn no_decode_failure_silently_becomes_a_default() {
    let files = sources();
    let decodes: usize = files.iter().map(|file| decode_chains(&file.code).len()).sum();
    assert!(
        decodes >= 20,
        "only {decodes} decoding calls found under src/: the scanner is broken"
    );
    let mut offenders = Vec::new();
    for file in &files {
        for (decoder, chain) in decode_chains(&file.code) {
            let Some(defaulting) = chain.iter().find(|m| DEFAULTING.contains(&m.as_str())) else {
                continue;
            };
            let allowed = DECODE_DEFAULT_ALLOWED
                .iter()
                .any(|(path, call, _why)| file.path == *path && decoder == *call);
            if !allowed {
                offenders.push(format!("{}: {decoder}(…).{defaulting}", file.path));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "a decode failure becomes a default (make it an error, or allow it with a reason): {offenders:#?}"
    );
}

#[test]
fn the_decode_scanner_sees_a_default_when_there_is_one() {
    let code = strip_comments_and_strings(
        "let a = row.try_get_by_index::<String>(0).unwrap_or_default();\n\
         let b = row.try_get_by_index::<String>(1)?;\n\
         let c = serde_json::from_str::<Vec<String>>(&raw).map_err(|e| e)?.first().cloned().ok_or(x)?;\n\
         let d = AreaCode::parse(&row.area_code)\n    .ok()\n    .and_then(|a| f(a));\n\
         let e = DeliveryState::parse(&p.state).unwrap_or(DeliveryState::Failed);\n\
         let f = row.try_get::<i64>(\"\", \"n\").unwrap_or(0);\n\
         let g = Page::parse(a, b).map_err(Error::from)?;",
    );
    let defaulted: Vec<(String, bool)> = decode_chains(&code)
        .into_iter()
        .map(|(decoder, chain)| {
            let defaults = chain.iter().any(|m| DEFAULTING.contains(&m.as_str()));
            (decoder, defaults)
        })
        .collect();
    let expected: Vec<(String, bool)> = [
        ("try_get_by_index", true),
        ("try_get_by_index", false),
        ("serde_json::from_str", false),
        ("::parse", true),
        ("::parse", true),
        ("try_get", true),
        ("::parse", false),
    ]
    .iter()
    .map(|(decoder, defaults)| ((*decoder).to_owned(), *defaults))
    .collect();
    assert_eq!(defaulted, expected);
}

#[test]
fn the_lower_crates_know_nothing_of_the_hub() {
    for krate in ["channels", "migrations", "firmware-protocol"] {
        let manifest = read(&workspace_root().join(krate).join("Cargo.toml"));
        let dependencies = dependency_names(&manifest);
        let herald: Vec<_> = dependencies
            .iter()
            .filter(|name| name.as_str() == "herald")
            .collect();
        assert!(herald.is_empty(), "{krate} depends on the hub crate");
        let files = rust_files(&workspace_root().join(krate).join("src"));
        assert!(!files.is_empty(), "{krate}/src has no Rust file");
        for path in files {
            let code = strip_comments_and_strings(&read(&path));
            assert!(
                !code.contains("herald::"),
                "{} names the hub crate",
                path.display()
            );
        }
    }
    firmware_protocol_stays_no_std_and_runtime_free();
    let migrations = read(&workspace_root().join("migrations/Cargo.toml"));
    assert_eq!(
        dependency_names(&migrations),
        set(&["sea-orm-migration", "serde_json"]),
        "migrations must not import the application's entities"
    );
}

/// Everything `firmware-protocol` may depend on, and why each may: a vendor builds the crate
/// `no_std` + `alloc` for a microcontroller, so each must build that way, and none may be an
/// async runtime or a Herald crate. Adding one means adding it here, with its reason.
const FIRMWARE_PROTOCOL_DEPENDENCIES: &[(&str, &str)] = &[
    ("ed25519-dalek", "signatures; no_std, no RNG by default"),
    ("serde", "message types; no_std with the alloc feature"),
    ("serde_json", "JSON payloads; no_std with the alloc feature"),
];

fn firmware_protocol_stays_no_std_and_runtime_free() {
    let root = workspace_root();
    let manifest = read(&root.join("firmware-protocol/Cargo.toml"));
    let allowed: BTreeSet<String> = FIRMWARE_PROTOCOL_DEPENDENCIES
        .iter()
        .map(|(name, _why)| (*name).to_owned())
        .collect();
    assert_eq!(
        dependency_names(&manifest),
        allowed,
        "firmware-protocol's dependencies changed: update FIRMWARE_PROTOCOL_DEPENDENCIES with a reason"
    );
    // No `std` feature asked for in [dependencies] (dev-dependencies may have it), and every
    // dependency comes from the workspace table with its default (std) features off.
    let dependencies_section = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("firmware-protocol has a [dependencies] section");
    assert!(
        !dependencies_section.contains("\"std\""),
        "firmware-protocol turns on a std feature"
    );
    let workspace_manifest = read(&root.join("Cargo.toml"));
    for (name, _why) in FIRMWARE_PROTOCOL_DEPENDENCIES {
        let line = workspace_manifest
            .lines()
            .find(|line| line.starts_with(&format!("{name} = ")))
            .unwrap_or_else(|| panic!("{name} is not in [workspace.dependencies]"));
        assert!(
            line.contains("default-features = false"),
            "{name} keeps its default (std) features in the workspace: {line}"
        );
    }
    let lib = strip_comments_and_strings(&read(&root.join("firmware-protocol/src/lib.rs")));
    assert!(
        lib.contains("#![no_std]"),
        "firmware-protocol is no longer no_std"
    );
    assert!(!lib.contains("extern crate std"), "firmware-protocol links std");
    let files = rust_files(&root.join("firmware-protocol/src"));
    assert!(files.len() >= 5, "the firmware-protocol walk went wrong");
    for path in files {
        let code = without_test_modules(&strip_comments_and_strings(&read(&path)));
        for banned in ["std::", "tokio", "async ", ".await", "herald::", "herald_"] {
            assert!(
                !code.contains(banned),
                "{} uses `{banned}` outside its tests",
                path.display()
            );
        }
    }
}

// ---- the source tree ----

#[derive(Clone)]
struct SourceFile {
    /// Relative to the workspace root, with `/` separators: `src/delivery/worker.rs`.
    path: String,
    /// The text with comments and string contents removed and `#[cfg(test)]` modules cut out.
    code: String,
}

impl SourceFile {
    fn new(path: &str, text: &str) -> Self {
        Self {
            path: path.to_owned(),
            code: without_test_modules(&strip_comments_and_strings(text)),
        }
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn sources() -> Vec<SourceFile> {
    let root = workspace_root();
    let files: Vec<_> = rust_files(&root.join("src"))
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(&root).expect("under the root");
            let relative = relative.to_string_lossy().replace('\\', "/");
            SourceFile::new(&relative, &read(&path))
        })
        .collect();
    assert!(
        files.len() >= MIN_SOURCE_FILES,
        "found only {} files under src/",
        files.len()
    );
    files
}

/// Names under `[dependencies]` (not dev- or build-dependencies) of a Cargo.toml.
fn dependency_names(manifest: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut in_dependencies = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
        } else if in_dependencies && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.']).next().unwrap_or_default().trim();
            names.insert(name.to_owned());
        }
    }
    names
}

/// Removes comments and the contents of string and char literals, so prose and messages that
/// mention `crate::x` or `Utc::now` are not taken for code.
fn strip_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !is_ident_char(out.chars().last()) {
            // A raw string r"…" or r#"…"#: ends at a quote followed by as many hashes.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && is_char_literal(&chars[i..]) {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident_char(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// `'x'` or `'\n'` rather than a lifetime `'a`.
fn is_char_literal(rest: &[char]) -> bool {
    match rest.get(1) {
        Some('\\') => true,
        Some(_) => rest.get(2) == Some(&'\''),
        None => false,
    }
}

/// Cuts out every `#[cfg(test)] mod name { … }`: tests may import anything.
fn without_test_modules(code: &str) -> String {
    let mut out = code.to_owned();
    while let Some(start) = out.find("#[cfg(test)]") {
        let after = &out[start + "#[cfg(test)]".len()..];
        let is_module = after.trim_start().starts_with("mod ");
        let Some(open) = after.find('{').filter(|_| is_module) else {
            out.replace_range(start..start + "#[cfg(test)]".len(), "");
            continue;
        };
        let open = start + "#[cfg(test)]".len() + open;
        let mut depth = 0;
        let mut end = out.len();
        for (offset, c) in out[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + offset + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.replace_range(start..end, "");
    }
    out
}

// ---- decoding calls ----

/// Every call of a [`DECODERS`] function in `code`, with the names of the methods chained after
/// it (`?` skipped): `x.try_get::<T>(…)?.ok()` → `("try_get", ["ok"])`.
fn decode_chains(code: &str) -> Vec<(String, Vec<String>)> {
    let chars: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let Some(decoder) = DECODERS.iter().find(|d| {
            let d: Vec<char> = d.chars().collect();
            chars[i..].starts_with(&d)
                && (d[0] == ':' || !is_ident_char(i.checked_sub(1).map(|p| chars[p])))
                && !is_ident_char(chars.get(i + d.len()).copied())
        }) else {
            i += 1;
            continue;
        };
        let mut j = skip_turbofish(&chars, i + decoder.chars().count());
        if chars.get(j) != Some(&'(') {
            i += 1;
            continue;
        }
        j = skip_balanced(&chars, j);
        let mut chain = Vec::new();
        loop {
            while chars.get(j).is_some_and(|c| c.is_whitespace() || *c == '?') {
                j += 1;
            }
            if chars.get(j) != Some(&'.') {
                break;
            }
            j += 1;
            let start = j;
            while is_ident_char(chars.get(j).copied()) {
                j += 1;
            }
            chain.push(chars[start..j].iter().collect());
            j = skip_turbofish(&chars, j);
            if chars.get(j) == Some(&'(') {
                j = skip_balanced(&chars, j);
            }
        }
        found.push(((*decoder).to_owned(), chain));
        i = j.max(i + 1);
    }
    found
}

/// Past `::<…>` at `at`, if there is one.
fn skip_turbofish(chars: &[char], at: usize) -> usize {
    if !chars[at.min(chars.len())..].starts_with(&[':', ':', '<']) {
        return at;
    }
    let mut depth = 0;
    for (offset, c) in chars[at + 2..].iter().enumerate() {
        match c {
            '<' => depth += 1,
            '>' => {
                depth -= 1;
                if depth == 0 {
                    return at + 2 + offset + 1;
                }
            }
            _ => {}
        }
    }
    chars.len()
}

/// Past the parenthesised group that opens at `open`.
fn skip_balanced(chars: &[char], open: usize) -> usize {
    let mut depth = 0;
    for (offset, c) in chars[open..].iter().enumerate() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return open + offset + 1;
                }
            }
            _ => {}
        }
    }
    chars.len()
}

// ---- the import graph ----

/// The module path a file defines: `src/delivery/mod.rs` → `["delivery"]`.
fn module_of(path: &str) -> Vec<String> {
    let inner = path.trim_start_matches("src/").trim_end_matches(".rs");
    let mut parts: Vec<String> = inner.split('/').map(str::to_owned).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

/// The file that defines the longest prefix of `module` that is a file.
fn file_of(module: &[String], files: &BTreeSet<String>) -> Option<String> {
    (1..=module.len()).rev().find_map(|n| {
        let base = format!("src/{}", module[..n].join("/"));
        [format!("{base}.rs"), format!("{base}/mod.rs")]
            .into_iter()
            .find(|candidate| files.contains(candidate))
    })
}

/// Every `crate::…` or `super::…` path a file names, as absolute module paths: the trees of its
/// `use` items expanded, and the paths written inline.
fn paths_named(file: &SourceFile) -> Vec<Vec<String>> {
    let own = module_of(&file.path);
    let mut found = Vec::new();
    let code = &file.code;
    for (start, _) in code.match_indices("crate::").chain(code.match_indices("super::")) {
        let before = code[..start].chars().last();
        if is_ident_char(before) || before == Some('$') || code[..start].ends_with("::") {
            continue;
        }
        let tree_end = use_tree_end(&code[start..]);
        let mut expanded = Vec::new();
        expand_use_tree(&code[start..start + tree_end], Vec::new(), &mut expanded);
        for relative in expanded {
            if let Some(absolute) = absolute_path(&own, &relative) {
                found.push(absolute);
            }
        }
    }
    found
}

/// Where the path or use tree starting at `text` ends: at the first `;`, or at the first
/// character that cannot be in a path, with braces balanced.
fn use_tree_end(text: &str) -> usize {
    let mut depth = 0i32;
    for (offset, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return offset,
            '}' => depth -= 1,
            ';' => return offset,
            c if depth == 0 && !(c.is_alphanumeric() || c == '_' || c == ':') => return offset,
            _ => {}
        }
    }
    text.len()
}

/// Expands `a::{b, c::{d, e}}` into `[a, b]`, `[a, c, d]`, `[a, c, e]`.
fn expand_use_tree(tree: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let mut head = prefix.clone();
        head.extend(segments(&tree[..open]));
        let inner = tree[open + 1..].trim_end();
        let inner = inner.strip_suffix('}').unwrap_or(inner);
        for branch in split_top_level(inner) {
            expand_use_tree(branch, head.clone(), out);
        }
    } else {
        let mut path = prefix;
        let tail = tree.split(" as ").next().unwrap_or(tree);
        path.extend(segments(tail).filter(|segment| segment != "self" && segment != "*"));
        out.push(path);
    }
}

fn segments(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split("::")
        .map(|segment| segment.trim().to_owned())
        .filter(|segment| !segment.is_empty())
}

fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (offset, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..offset]);
                start = offset + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().filter(|part| !part.trim().is_empty()).collect()
}

/// Resolves `crate::…` and `super::…` against the module the file defines.
fn absolute_path(own: &[String], relative: &[String]) -> Option<Vec<String>> {
    let (first, rest) = relative.split_first()?;
    match first.as_str() {
        "crate" => Some(rest.to_vec()),
        "super" => {
            // `super` is the parent of the module the file defines (for a mod.rs, its folder's).
            let mut base = own.to_vec();
            base.pop()?;
            let mut rest = rest;
            while rest.first().map(String::as_str) == Some("super") {
                base.pop()?;
                rest = &rest[1..];
            }
            base.extend(rest.iter().cloned());
            Some(base)
        }
        _ => None,
    }
}

/// File-level import edges. A `mod.rs` naming its own descendants (declaring or re-exporting
/// them) is no dependency, as in `/work/shared/tools/import-circles`.
fn import_graph(files: &[SourceFile]) -> BTreeMap<String, BTreeSet<String>> {
    let names: BTreeSet<String> = files.iter().map(|f| f.path.clone()).collect();
    let mut graph = BTreeMap::new();
    for file in files {
        let own_dir = file.path.strip_suffix("mod.rs");
        let targets: BTreeSet<String> = paths_named(file)
            .iter()
            .filter_map(|path| file_of(path, &names))
            .filter(|target| *target != file.path)
            .filter(|target| !own_dir.is_some_and(|dir| target.starts_with(dir)))
            .collect();
        graph.insert(file.path.clone(), targets);
    }
    graph
}

/// Strongly connected components with more than one file (Tarjan).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        circles: Vec<Vec<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, node: &'g str) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            for next in self.graph.get(node).into_iter().flatten() {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.stack.contains(&next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(member) = self.stack.pop() {
                    component.push(member.to_owned());
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.circles.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        circles: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            walk.visit(node);
        }
    }
    walk.circles
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}
