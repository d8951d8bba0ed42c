//! The setup guides against the code: every verdict id that `oqsdns check` can give (the
//! `pub const …: &str = "…"` lines of `crates/oqsdns/src/check/verdict.rs`'s `mod id`, read from
//! the source so a new verdict is caught without editing this test) has a row in the verdict
//! table of the Japanese guide with an action and who takes it, and a row in the English guide.

use std::path::Path;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The string values of the `pub const NAME: &str = "value";` lines inside `pub mod id { … }`.
fn verdict_ids(source: &str) -> Vec<String> {
    let start = source
        .find("pub mod id {")
        .expect("verdict.rs has `pub mod id`");
    let mut ids = Vec::new();
    let mut depth = 0usize;
    for line in source[start..].lines() {
        depth += line.matches('{').count();
        depth -= line.matches('}').count().min(depth);
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("pub const ") {
            if let Some((_, value)) = rest.split_once(": &str = \"") {
                let id = value.split('"').next().unwrap();
                ids.push(id.to_string());
            }
        }
        if depth == 0 {
            break;
        }
    }
    ids
}

/// The cells of the table row that starts with `` `id` ``, if any.
fn row<'a>(doc: &'a str, id: &str) -> Option<Vec<&'a str>> {
    let head = format!("| `{id}` |");
    doc.lines()
        .find(|l| l.starts_with(&head))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
}

#[test]
fn the_ids_are_read_from_the_code() {
    let ids = verdict_ids(&read("crates/oqsdns/src/check/verdict.rs"));
    for id in ["ok", "nw-base-unreachable", "tcp-blocked", "prefix-changed"] {
        assert!(ids.iter().any(|i| i == id), "{id} not found in {ids:?}");
    }
    assert!(ids.len() >= 10, "{ids:?}");
    // The parser stops at the end of `mod id`: nothing after it is taken for an id.
    let source = "pub mod id {\n    pub const A: &str = \"a\";\n}\npub const B: &str = \"b\";\n";
    assert_eq!(verdict_ids(source), ["a"]);
}

#[test]
fn every_verdict_has_a_row_with_an_action_in_the_japanese_guide() {
    let ids = verdict_ids(&read("crates/oqsdns/src/check/verdict.rs"));
    let doc = read("docs/ja/setup.md");
    let header = doc
        .lines()
        .find(|l| l.starts_with("| 判定 ID |"))
        .expect("the verdict table's header in docs/ja/setup.md");
    let columns: Vec<&str> = header.trim_matches('|').split('|').map(str::trim).collect();
    assert_eq!(columns, ["判定 ID", "意味", "対処", "担当", "接続ガイド"]);
    for id in &ids {
        let cells = row(&doc, id)
            .unwrap_or_else(|| panic!("docs/ja/setup.md has no row for verdict `{id}`"));
        assert_eq!(cells.len(), columns.len(), "{id}: {cells:?}");
        let (meaning, action, who, guide) = (cells[1], cells[2], cells[3], cells[4]);
        assert!(!meaning.is_empty(), "{id}: no meaning");
        assert!(!guide.is_empty(), "{id}: no reference to the guide");
        if id == "ok" {
            continue;
        }
        assert!(
            action.chars().count() >= 15,
            "{id}: the action is missing or too short: {action:?}"
        );
        assert!(
            who.contains("スタッフ") || who.contains("ベンダー"),
            "{id}: who takes the action (スタッフ or ベンダー): {who:?}"
        );
    }
}

#[test]
fn every_verdict_has_a_row_in_the_english_guide() {
    let ids = verdict_ids(&read("crates/oqsdns/src/check/verdict.rs"));
    let doc = read("docs/setup.md");
    for id in &ids {
        let cells =
            row(&doc, id).unwrap_or_else(|| panic!("docs/setup.md has no row for verdict `{id}`"));
        assert!(
            cells.len() == 5 && cells.iter().all(|c| !c.is_empty()),
            "{id}: {cells:?}"
        );
    }
}
