//! `cargo xtask release <version> [--execute]`: lockstep version bump, changelog check,
//! packaging of every crate in dependency order, and the tag to create. A dry run unless
//! `--execute`.

use crate::cargo;

const MANIFEST: &str = "Cargo.toml";

fn current_version(manifest: &str) -> Option<String> {
    let section = manifest.split("[workspace.package]").nth(1)?;
    let line = section.lines().find(|l| l.trim_start().starts_with("version"))?;
    Some(line.split('"').nth(1)?.to_string())
}

fn valid(version: &str) -> bool {
    let parts: Vec<&str> = version.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// Rewrites the workspace version and every `fheml-*` dependency's version.
fn bumped(manifest: &str, from: &str, to: &str) -> String {
    manifest
        .lines()
        .map(|line| {
            let t = line.trim_start();
            let is_package_version = t.starts_with("version = ") && !line.starts_with(' ');
            if (is_package_version || t.starts_with("fheml-")) && line.contains(&format!("\"{from}\"")) {
                line.replace(&format!("\"{from}\""), &format!("\"{to}\""))
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Entry point.
pub fn run(args: &[String]) -> Result<(), String> {
    let version = args.first().ok_or("usage: cargo xtask release <version> [--execute]")?;
    let execute = args.iter().any(|a| a == "--execute");
    if !valid(version) {
        return Err(format!("`{version}` is not a MAJOR.MINOR.PATCH version"));
    }
    let manifest = std::fs::read_to_string(MANIFEST).map_err(|e| format!("{MANIFEST}: {e}"))?;
    let current = current_version(&manifest).ok_or("no [workspace.package] version in Cargo.toml")?;
    let changelog = std::fs::read_to_string("CHANGELOG.md").map_err(|e| format!("CHANGELOG.md: {e}"))?;
    let has_entry = changelog
        .lines()
        .any(|l| l.starts_with("## ") && (l.contains(&format!("[{version}]")) || l.contains(&format!(" {version}"))));
    if !has_entry {
        return Err(format!("CHANGELOG.md has no `## [{version}]` entry; write one first"));
    }
    if current != *version {
        let next = bumped(&manifest, &current, version);
        if execute {
            std::fs::write(MANIFEST, next).map_err(|e| e.to_string())?;
            eprintln!("bumped {current} -> {version} in {MANIFEST}");
        } else {
            eprintln!("would bump {current} -> {version} in {MANIFEST} (every crate, lockstep)");
        }
    } else {
        eprintln!("workspace already at {version}");
    }
    // Packages every publishable crate in dependency order against a local overlay of the
    // workspace, as `cargo publish` would, without uploading unless --execute.
    let mut publish = vec!["publish", "--workspace", "--allow-dirty", "--no-verify"];
    if !execute {
        publish.push("--dry-run");
    }
    if !cargo(&publish) {
        return Err("packaging failed".into());
    }
    println!("git tag -a v{version} -m \"fheml {version}\" && git push origin v{version}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bumps_workspace_and_internal_dependencies_only() {
        let manifest = "[workspace.package]\nversion = \"0.1.0\"\n\n[workspace.dependencies]\nfheml-quant = { path = \"quant\", version = \"0.1.0\" }\nserde = { version = \"0.1.0\" }\n";
        let next = bumped(manifest, "0.1.0", "0.2.0");
        assert!(next.contains("version = \"0.2.0\"\n"));
        assert!(next.contains("fheml-quant = { path = \"quant\", version = \"0.2.0\" }"));
        assert!(next.contains("serde = { version = \"0.1.0\" }"));
        assert_eq!(current_version(manifest).as_deref(), Some("0.1.0"));
        assert!(valid("1.2.3") && !valid("1.2") && !valid("v1.2.3"));
    }
}
