//! Embeds the git commit (`git rev-parse HEAD`) as `SURGE_GIT_COMMIT`; "unknown" without git.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

fn main() {
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SURGE_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-changed=build.rs");
    // Re-run when HEAD moves: HEAD changes on checkout, logs/HEAD on every commit (worktrees too).
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        for file in ["HEAD", "logs/HEAD"] {
            let path = PathBuf::from(&dir).join(file);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}
