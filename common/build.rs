//! Build script: exports `REVMUX_VERSION`, the crate version followed by the commit and its date
//! when built from a git checkout ("0.1.0 (abc1234 2026-11-22)"), else "0.1.0 (unknown commit)".

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_else(|_| "0.0.0".to_owned());
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| ".".into()));
    println!("cargo:rerun-if-changed=build.rs");
    let described =
        match (git(&dir, &["rev-parse", "--short", "HEAD"]), git(&dir, &["log", "-1", "--date=short", "--format=%cd"]))
        {
            (Some(commit), Some(date)) => {
                watch_head(&dir);
                format!("{version} ({commit} {date})")
            }
            _ => format!("{version} (unknown commit)"),
        };
    println!("cargo:rustc-env=REVMUX_VERSION={described}");
}

/// One line of a git command's output run in `dir`; None without git, outside a checkout, or
/// on any failure.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!line.is_empty()).then_some(line)
}

/// Rebuild when HEAD moves: HEAD itself, the branch ref it points to, and packed-refs. Git asks
/// where they are (a worktree keeps HEAD apart from the refs); only existing files are named,
/// since cargo reruns the script on every build for a path that does not exist.
fn watch_head(dir: &Path) {
    let mut files = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(head_ref) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        files.push(head_ref);
    }
    for file in files {
        let Some(path) = git(dir, &["rev-parse", "--path-format=absolute", "--git-path", &file]) else {
            continue;
        };
        if Path::new(&path).is_file() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
