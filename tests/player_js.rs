//! The player's pure JavaScript (`web/latency.js`: target delay, rate controller, delay
//! statistics) under node's built-in test runner (`web/latency.test.js`). Skipped (passes with a
//! `skipped:` line) when node is not installed (Debian: `apt-get install nodejs`).

use std::process::Command;

#[test]
fn latency_controller_unit_tests_pass_under_node() {
    let web = concat!(env!("CARGO_MANIFEST_DIR"), "/web");
    let Ok(out) = Command::new("node")
        .arg("--test")
        .arg(format!("{web}/latency.test.js"))
        .output()
    else {
        println!("skipped: node is not installed (Debian: apt-get install nodejs)");
        return;
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "node --test failed:\n{text}");
    assert!(text.contains("# pass"), "no test ran:\n{text}");
}
