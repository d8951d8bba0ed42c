//! The setup guides against the code: every verdict `oqsdns check` can give ([`id::ALL`]) has a
//! row in the verdict table of the Japanese guide and of the English one, and the row says what
//! the code says: who acts (the vendor exactly when the verdict tells staff to call the vendor)
//! and every reference to the connection guide the verdict cites. The verdicts are built through
//! the code ([`example`]), so a changed reference or a changed `call_vendor` fails here until the
//! guides follow.

use std::path::Path;

use oqsdns::check::verdict::{example, id, Verdict};

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The cells of the table row that starts with `` `id` ``, if any.
fn row<'a>(doc: &'a str, id: &str) -> Option<Vec<&'a str>> {
    let head = format!("| `{id}` |");
    doc.lines()
        .find(|l| l.starts_with(&head))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
}

/// A reference as compared: 手順 and "steps" as "step", full-width brackets as ASCII, any dash or wave dash
/// as "-", "pp." as "p.", no spaces, lower case. `手順7 (pp.12–13)` and `手順7（p.12〜13）` and
/// `step 7 (pp.12-13)` are the same.
fn norm(text: &str) -> String {
    text.replace("手順", "step")
        .replace("steps", "step")
        .replace("pp.", "p.")
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '（' => '(',
            '）' => ')',
            '〜' | '～' | '–' | '—' | '~' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

fn verdicts() -> Vec<Verdict> {
    id::ALL
        .iter()
        .map(|name| example(name).unwrap_or_else(|| panic!("no example verdict for {name}")))
        .collect()
}

/// `FAQ Q2` is in `FAQ Q21, FAQ Q3` as a substring; a reference item matches only when what
/// follows it in the cell is not a digit.
fn contains_item(cell: &str, item: &str) -> bool {
    let (cell, item) = (norm(cell), norm(item));
    cell.match_indices(&item).any(|(at, _)| {
        !cell[at + item.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

/// Every item of the verdict's reference (`1-1 手順2 (p.1), FAQ Q3, …`) that `cell` lacks.
fn missing(verdict: &Verdict, cell: &str) -> Vec<&'static str> {
    verdict
        .reference
        .split(", ")
        .filter(|item| !contains_item(cell, item))
        .collect()
}

#[test]
fn references_compare_across_the_guides_spellings() {
    assert_eq!(norm("手順7 (pp.12–13)"), norm("手順7（p.12〜13）"));
    assert_eq!(norm("1-1 手順2 (p.1)"), norm("1-1 step 2 (p.1)"));
    assert_eq!(norm("手順4〜6 (pp.5–11)"), norm("steps 4–6 (pp.5–11)"));
    assert!(contains_item("3-1（p.14）、FAQ Q18", "3-1 (p.14)"));
    assert!(!contains_item("FAQ Q21、FAQ Q3", "FAQ Q2"));
    let centre = example(id::CENTRE_UNREACHABLE).unwrap();
    assert_eq!(
        missing(&centre, "手順1（p.2）、FAQ Q21、FAQ Q3"),
        ["FAQ Q2"]
    );
    // The page number belongs right after the step: "手順1（p.2）の注意", not "手順1 の注意（p.2）".
    assert_eq!(
        missing(&centre, "手順1 の注意（p.2）、FAQ Q2、FAQ Q3"),
        ["手順1 (p.2)"]
    );
}

#[test]
fn every_verdict_has_the_codes_row_in_the_japanese_guide() {
    let doc = read("docs/ja/setup.md");
    let header = doc
        .lines()
        .find(|l| l.starts_with("| 判定 ID |"))
        .expect("the verdict table's header in docs/ja/setup.md");
    let columns: Vec<&str> = header.trim_matches('|').split('|').map(str::trim).collect();
    assert_eq!(columns, ["判定 ID", "意味", "対処", "担当", "接続ガイド"]);
    let mut wrong = Vec::new();
    for v in verdicts() {
        let cells = row(&doc, v.id)
            .unwrap_or_else(|| panic!("docs/ja/setup.md has no row for verdict `{}`", v.id));
        assert_eq!(cells.len(), columns.len(), "{}: {cells:?}", v.id);
        let (meaning, action, who, guide) = (cells[1], cells[2], cells[3], cells[4]);
        assert!(!meaning.is_empty(), "{}: no meaning", v.id);
        assert!(
            action.chars().count() >= 15,
            "{}: the action is missing or too short: {action:?}",
            v.id
        );
        if who.starts_with("ベンダー") != v.call_vendor {
            wrong.push(format!(
                "{}: 担当 {who:?}, but call_vendor is {} (ベンダー first exactly when staff call the vendor)",
                v.id, v.call_vendor
            ));
        }
        if !(v.call_vendor || who.starts_with("スタッフ") || who == "—") {
            wrong.push(format!("{}: 担当 {who:?} is neither スタッフ nor —", v.id));
        }
        let lacking = missing(&v, guide);
        if !lacking.is_empty() {
            wrong.push(format!(
                "{}: 接続ガイド {guide:?} lacks {lacking:?} (the code cites {:?})",
                v.id, v.reference
            ));
        }
    }
    assert!(wrong.is_empty(), "docs/ja/setup.md:\n{}", wrong.join("\n"));
}

#[test]
fn every_verdict_has_the_codes_row_in_the_english_guide() {
    let doc = read("docs/setup.md");
    let mut wrong = Vec::new();
    for v in verdicts() {
        let cells = row(&doc, v.id)
            .unwrap_or_else(|| panic!("docs/setup.md has no row for verdict `{}`", v.id));
        assert!(
            cells.len() == 5 && cells.iter().all(|c| !c.is_empty()),
            "{}: {cells:?}",
            v.id
        );
        let (who, guide) = (cells[3], cells[4]);
        if who.starts_with("vendor") != v.call_vendor {
            wrong.push(format!(
                "{}: who {who:?}, but call_vendor is {}",
                v.id, v.call_vendor
            ));
        }
        let lacking = missing(&v, guide);
        if !lacking.is_empty() {
            wrong.push(format!(
                "{}: the guide cell {guide:?} lacks {lacking:?} (the code cites {:?})",
                v.id, v.reference
            ));
        }
    }
    assert!(wrong.is_empty(), "docs/setup.md:\n{}", wrong.join("\n"));
}
