//! `cargo xtask release <version> [--execute] [--no-verify]`: a lockstep release of every
//! workspace crate.
//!
//! 1. Refuses a version that is not semver or not greater than every member's version, an
//!    existing tag `v<version>`, and (with `--execute`) a working tree that is not clean.
//! 2. Works out the publish order from `cargo metadata`: workspace crates before the crates
//!    that need them (normal and build dependencies, and dev-dependencies that carry a version,
//!    as cargo keeps those in the published manifest); `publish = false` crates are skipped, a
//!    cycle is refused, and so is a publishable crate needing an unpublishable one or a path
//!    dependency without a version.
//! 3. Copies the working tree (tracked and untracked-but-not-ignored files) into a temporary
//!    directory and bumps the copy: `[workspace.package]` and `[package]` versions, the version
//!    requirements of path dependencies on workspace crates (in `[workspace.dependencies]` and
//!    every crate's dependency tables), `Cargo.lock` (`cargo update --workspace --offline`),
//!    and CHANGELOG.md (a `## [<version>]` heading, or the `## [Unreleased]` heading renamed to
//!    `## [<version>] - <today>`). `cargo metadata` on the copy then checks the bump.
//! 4. Runs `cargo publish --dry-run --allow-dirty -p <crate> ...` on the bumped copy, every
//!    publishable crate in one call. Not one call per crate: a dry run of a crate whose
//!    workspace dependencies are not on crates.io yet fails to resolve them (even with
//!    `--no-verify`), while cargo's multi-package publish packages the crates in dependency
//!    order and resolves each against the ones packaged before it (a local overlay of
//!    crates.io), which is what crates.io will see when they are published in that order.
//!    It also builds each packaged crate (verification), which compiles tfhe and burn;
//!    `--no-verify` skips that build and only packages.
//! 5. Without `--execute`, prints the commit and tag commands and leaves this tree as it was.
//!    With `--execute`, writes the same edits here and creates the commit `release <version>`
//!    and the annotated tag `v<version>`. Neither pushes nor uploads: the push and the
//!    `cargo publish -p <crate>` commands, in order, are printed for a person to run.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const USAGE: &str = "usage: cargo xtask release <version> [--execute] [--no-verify]";

// ---------------------------------------------------------------------------------------------
// Versions

/// One dot-separated pre-release identifier. Numeric identifiers sort before alphanumeric ones.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Ident {
    Num(u64),
    Alpha(String),
}

/// A semantic version (semver.org 2.0.0).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Version {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Vec<Ident>,
    text: String,
}

fn number(part: &str, what: &str, whole: &str) -> Result<u64, String> {
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{whole}` is not a semver version: {what} `{part}` is not a number"));
    }
    if part.len() > 1 && part.starts_with('0') {
        return Err(format!("`{whole}` is not a semver version: {what} `{part}` has a leading zero"));
    }
    part.parse().map_err(|_| format!("`{whole}` is not a semver version: {what} `{part}` is too large"))
}

fn identifiers<'a>(part: &'a str, what: &str, whole: &str) -> Result<Vec<&'a str>, String> {
    let ids: Vec<&str> = part.split('.').collect();
    if ids.iter().any(|id| id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')) {
        return Err(format!("`{whole}` is not a semver version: bad {what} `{part}`"));
    }
    Ok(ids)
}

impl Version {
    fn parse(text: &str) -> Result<Version, String> {
        if text.starts_with(['v', 'V']) {
            return Err(format!("`{text}` is not a semver version: give it without the leading `v`"));
        }
        let (rest, build) = match text.split_once('+') {
            Some((rest, build)) => (rest, Some(build)),
            None => (text, None),
        };
        if let Some(build) = build {
            identifiers(build, "build metadata", text)?;
        }
        let (core, pre) = match rest.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (rest, None),
        };
        let parts: Vec<&str> = core.split('.').collect();
        let [major, minor, patch] = parts[..] else {
            return Err(format!("`{text}` is not a semver MAJOR.MINOR.PATCH version"));
        };
        let mut version = Version {
            major: number(major, "major", text)?,
            minor: number(minor, "minor", text)?,
            patch: number(patch, "patch", text)?,
            pre: Vec::new(),
            text: text.to_string(),
        };
        if let Some(pre) = pre {
            for id in identifiers(pre, "pre-release", text)? {
                version.pre.push(if id.bytes().all(|b| b.is_ascii_digit()) {
                    Ident::Num(number(id, "pre-release identifier", text)?)
                } else {
                    Ident::Alpha(id.to_string())
                });
            }
        }
        Ok(version)
    }

    /// Semver precedence: build metadata is ignored, a pre-release sorts before its release.
    fn precedence(&self, other: &Version) -> Ordering {
        (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch)).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            }
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

// ---------------------------------------------------------------------------------------------
// Cargo.toml rewriting: a line-based editor over the `version = "..."` fields

const DEP_TABLES: [&str; 5] =
    ["dependencies", "dev-dependencies", "build-dependencies", "dev_dependencies", "build_dependencies"];

/// A table header's keys: `[target.'cfg(unix)'.dependencies]` gives `target`,
/// `cfg(unix)`, `dependencies`.
fn header_keys(line: &str) -> Option<Vec<String>> {
    let t = line.trim();
    let inner = t.strip_prefix("[[").or_else(|| t.strip_prefix('['))?;
    let end = inner.find(']')?;
    let mut keys = Vec::new();
    let mut key = String::new();
    let mut quote = None;
    for c in inner[..end].chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '.') => keys.push(std::mem::take(&mut key).trim().to_string()),
            _ => key.push(c),
        }
    }
    keys.push(key.trim().to_string());
    Some(keys)
}

fn unquote(key: &str) -> &str {
    let k = key.trim();
    k.strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .or_else(|| k.strip_prefix('\'')?.strip_suffix('\''))
        .unwrap_or(k)
}

/// The key of a `key = value` line and the byte offset just after its `=`.
fn line_key(line: &str) -> Option<(&str, usize)> {
    let t = line.trim_start();
    if t.starts_with('#') || t.starts_with('[') {
        return None;
    }
    let eq = line.find('=')?;
    Some((unquote(&line[..eq]), eq + 1))
}

/// The byte span of the string at `from` (after spaces), without its quotes.
fn string_at(line: &str, from: usize) -> Option<(usize, usize)> {
    let start = from + line[from..].len() - line[from..].trim_start().len();
    let quote = *line.as_bytes().get(start)?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let mut i = start + 1;
    let bytes = line.as_bytes();
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 2,
            b if b == quote => return Some((start + 1, i)),
            _ => i += 1,
        }
    }
    None
}

/// Where the value starting at `from` ends: at the `,` or `}` closing it, outside strings
/// and brackets.
fn value_end(line: &str, from: usize) -> usize {
    let bytes = line.as_bytes();
    let (mut depth, mut quote, mut i) = (0i32, None, from);
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == b'\\' && q == b'"' => i += 1,
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => match b {
                b'"' | b'\'' => quote = Some(b),
                b'[' | b'{' => depth += 1,
                b']' | b'}' if depth > 0 => depth -= 1,
                b',' | b'}' => return i,
                _ => {}
            },
        }
        i += 1;
    }
    i
}

/// The fields of the one-line inline table in `line` after byte `from`: key, value start,
/// value end.
fn inline_fields(line: &str, from: usize) -> Vec<(String, usize, usize)> {
    let mut fields = Vec::new();
    let Some(open) = line[from..].find('{').map(|i| i + from) else { return fields };
    let mut i = open + 1;
    while let Some(eq) = line[i..].find('=').map(|e| e + i) {
        let key = line[i..eq].trim();
        if key.is_empty() || key.contains('}') {
            break;
        }
        let end = value_end(line, eq + 1);
        fields.push((unquote(key).to_string(), eq + 1, end));
        if line.as_bytes().get(end) != Some(&b',') {
            break;
        }
        i = end + 1;
    }
    fields
}

/// `req` rewritten to require `to`, keeping its operator (`=0.1.0` gives `=0.2.0`).
fn rewrite_req(req: &str, to: &str) -> Result<String, String> {
    if req.contains(',') || req.contains('*') || req.trim().is_empty() {
        return Err(format!("cannot rewrite the version requirement `{req}`; make it a plain version"));
    }
    let digits = req.find(|c: char| c.is_ascii_digit()).unwrap_or(req.len());
    Ok(format!("{}{to}", req[..digits].trim()))
}

enum Section {
    /// `[package]` or `[workspace.package]`.
    Package,
    /// `[dependencies]` and its kin: one dependency per line.
    Deps,
    /// `[dependencies.<name>]` and its kin.
    Dep(String),
    Other,
}

fn section(keys: &[String]) -> Section {
    let is_deps = |k: &String| DEP_TABLES.contains(&k.as_str());
    match keys {
        [p] if p == "package" => Section::Package,
        [w, p] if w == "workspace" && p == "package" => Section::Package,
        [.., last] if is_deps(last) => Section::Deps,
        [.., table, name] if is_deps(table) => Section::Dep(name.clone()),
        _ => Section::Other,
    }
}

/// Bumps a Cargo.toml: the `version` of `[package]` and `[workspace.package]`, and the
/// version requirement of every path dependency on a crate named in `members`. Returns the
/// new text and one line per change.
fn bump_manifest(text: &str, members: &BTreeSet<String>, to: &str) -> Result<(String, Vec<String>), String> {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    let mut changes = Vec::new();
    let replace = |line: &mut String, (start, end): (usize, usize), new: &str, no: usize, what: &str| {
        let old = line[start..end].to_string();
        if old != new {
            line.replace_range(start..end, new);
            return Some(format!("line {}: {what} {old} -> {new}", no + 1));
        }
        None
    };
    // Section boundaries, so that a `[dependencies.x]` table can be read whole first.
    let mut starts: Vec<(usize, Section)> = vec![(0, Section::Other)];
    for (i, line) in lines.iter().enumerate() {
        if let Some(keys) = header_keys(line) {
            starts.push((i, section(&keys)));
        }
    }
    for (s, (start, kind)) in starts.iter().enumerate() {
        let end = starts.get(s + 1).map_or(lines.len(), |(i, _)| *i);
        match kind {
            Section::Other => {}
            Section::Package => {
                for (line, no) in lines[*start..end].iter_mut().zip(*start..) {
                    if let Some(("version", after)) = line_key(line)
                        && let Some(span) = string_at(line, after)
                    {
                        changes.extend(replace(line, span, to, no, "version"));
                    }
                }
            }
            Section::Deps => {
                for (line, no) in lines[*start..end].iter_mut().zip(*start..) {
                    let Some((key, after)) = line_key(line) else { continue };
                    let key = key.to_string();
                    let fields = inline_fields(line, after);
                    let field = |name: &str| fields.iter().find(|(k, _, _)| k == name);
                    let package = field("package").and_then(|(_, s, _)| string_at(line, *s)).map(|(a, b)| &line[a..b]);
                    let package = package.unwrap_or(&key).to_string();
                    if !members.contains(&package) || field("path").is_none() {
                        continue;
                    }
                    if let Some(span) = field("version").and_then(|(_, s, _)| string_at(line, *s)) {
                        let new = rewrite_req(&line[span.0..span.1], to)?;
                        changes.extend(replace(line, span, &new, no, &format!("{key} requirement")));
                    }
                }
            }
            Section::Dep(name) => {
                let mut package = name.clone();
                let mut has_path = false;
                for line in &lines[*start..end] {
                    match line_key(line) {
                        Some(("package", after)) => {
                            if let Some((a, b)) = string_at(line, after) {
                                package = line[a..b].to_string();
                            }
                        }
                        Some(("path", _)) => has_path = true,
                        _ => {}
                    }
                }
                if !members.contains(&package) || !has_path {
                    continue;
                }
                for (line, no) in lines[*start..end].iter_mut().zip(*start..) {
                    if let Some(("version", after)) = line_key(line)
                        && let Some(span) = string_at(line, after)
                    {
                        let new = rewrite_req(&line[span.0..span.1], to)?;
                        changes.extend(replace(line, span, &new, no, &format!("{name} requirement")));
                    }
                }
            }
        }
    }
    Ok((lines.concat(), changes))
}

// ---------------------------------------------------------------------------------------------
// CHANGELOG.md

/// The version a `## ` heading names: `## [0.1.0] - 2026-11-24` gives `0.1.0`.
fn heading_version(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("## ")?.trim_start();
    let rest = rest.strip_prefix('[').unwrap_or(rest);
    let end = rest.find([']', ' ', '\t']).unwrap_or(rest.len());
    let name = &rest[..end];
    Some(name.strip_prefix('v').filter(|n| n.starts_with(|c: char| c.is_ascii_digit())).unwrap_or(name))
}

/// CHANGELOG.md with a heading for `version`: unchanged when it has one, else its
/// `## [Unreleased]` heading renamed to `## [<version>] - <date>`. Returns the text and the
/// renamed heading (old, new) if any.
fn changelog_with(text: &str, version: &str, date: &str) -> Result<(String, Option<(String, String)>), String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    if lines.iter().any(|l| heading_version(l.trim_end()) == Some(version)) {
        return Ok((text.to_string(), None));
    }
    let Some(at) =
        lines.iter().position(|l| heading_version(l.trim_end()).is_some_and(|v| v.eq_ignore_ascii_case("unreleased")))
    else {
        return Err(format!(
            "CHANGELOG.md has no `## [{version}]` heading and no `## [Unreleased]` heading to rename; write one first"
        ));
    };
    let body_end = lines[at + 1..].iter().position(|l| l.starts_with("## ")).map_or(lines.len(), |i| at + 1 + i);
    if lines[at + 1..body_end].iter().all(|l| l.trim().is_empty()) {
        return Err(format!("CHANGELOG.md: the `{}` section is empty; nothing to release", lines[at].trim_end()));
    }
    let old = lines[at].trim_end().to_string();
    let new = format!("## [{version}] - {date}");
    let ending = &lines[at][lines[at].trim_end().len()..];
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    out[at] = format!("{new}{ending}");
    Ok((out.concat(), Some((old, new))))
}

/// Today's date (UTC) as YYYY-MM-DD.
fn today() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

// ---------------------------------------------------------------------------------------------
// Publish order

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DepKind {
    Normal,
    Build,
    Dev,
}

/// A path dependency of a workspace crate on another workspace crate.
#[derive(Debug, Clone)]
struct Dep {
    name: String,
    kind: DepKind,
    /// The version requirement, `*` when the dependency names none.
    req: String,
}

/// A workspace crate, from `cargo metadata`.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    version: String,
    publish: bool,
    manifest: PathBuf,
    deps: Vec<Dep>,
}

/// The publishable crates, each after the workspace crates it needs, and the skipped ones.
#[derive(Debug, PartialEq)]
struct Order {
    crates: Vec<String>,
    skipped: Vec<String>,
}

fn publish_order(members: &[Member]) -> Result<Order, String> {
    let publishable: BTreeMap<&str, &Member> =
        members.iter().filter(|m| m.publish).map(|m| (m.name.as_str(), m)).collect();
    let mut needs: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (&name, m) in &publishable {
        let entry = needs.entry(name).or_default();
        for dep in &m.deps {
            // cargo publish drops a dev-dependency without a version; one with a version stays
            // in the published manifest, and crates.io must know the crate it names.
            if dep.name == name || (dep.kind == DepKind::Dev && dep.req == "*") {
                continue;
            }
            if dep.req == "*" {
                return Err(format!(
                    "{name} depends on {} by path without a version; cargo publish refuses that",
                    dep.name
                ));
            }
            if !publishable.contains_key(dep.name.as_str()) {
                return Err(format!("{name} depends on {}, which is `publish = false`", dep.name));
            }
            entry.insert(dep.name.as_str());
        }
    }
    let mut crates: Vec<String> = Vec::new();
    while crates.len() < needs.len() {
        let next = needs
            .iter()
            .find(|(n, deps)| !crates.iter().any(|c| c == *n) && deps.iter().all(|d| crates.iter().any(|c| c == d)));
        let Some((&name, _)) = next else {
            return Err(format!("dependency cycle among workspace crates: {}", cycle(&needs, &crates).join(" -> ")));
        };
        crates.push(name.to_string());
    }
    let skipped = members.iter().filter(|m| !m.publish).map(|m| m.name.clone()).collect();
    Ok(Order { crates, skipped })
}

/// A cycle among the crates not yet placed (each has an unplaced dependency).
fn cycle(needs: &BTreeMap<&str, BTreeSet<&str>>, placed: &[String]) -> Vec<String> {
    let unplaced = |n: &str| !placed.iter().any(|p| p == n);
    let mut path: Vec<&str> = needs.keys().copied().filter(|n| unplaced(n)).take(1).collect();
    while let Some(&last) = path.last() {
        let Some(&next) = needs.get(last).and_then(|deps| deps.iter().find(|n| unplaced(n))) else { break };
        if let Some(at) = path.iter().position(|p| *p == next) {
            let mut c: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
            c.push(next.to_string());
            return c;
        }
        path.push(next);
    }
    path.iter().map(|s| s.to_string()).collect()
}

/// Checks that every crate is at `to` and every path requirement between them names it.
fn check_bumped(members: &[Member], to: &str) -> Result<(), String> {
    let mut wrong = Vec::new();
    for m in members {
        if m.version != to {
            wrong.push(format!("{} is at {}", m.name, m.version));
        }
        for d in m.deps.iter().filter(|d| d.req != "*") {
            if d.req.trim_start_matches(['=', '^', '~', '>', '<', ' ']) != to {
                wrong.push(format!("{} requires {} {}", m.name, d.name, d.req));
            }
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("after the bump to {to}: {}; edit that by hand", wrong.join("; ")))
    }
}

// ---------------------------------------------------------------------------------------------
// cargo, git and the temporary copy

fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The workspace root and its crates, from `cargo metadata` run in `dir`.
fn metadata(dir: &Path) -> Result<(PathBuf, Vec<Member>), String> {
    let out = Command::new(cargo_bin())
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(dir)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err("cargo metadata failed".into());
    }
    let meta: crate::json::Value = crate::json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    let root = PathBuf::from(meta["workspace_root"].as_str().ok_or("cargo metadata: no workspace_root")?);
    let ids: BTreeSet<&str> =
        meta["workspace_members"].as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect();
    let packages: Vec<&crate::json::Value> = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["id"].as_str().is_some_and(|id| ids.contains(id)))
        .collect();
    let names: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let str_of = |v: &crate::json::Value| v.as_str().unwrap_or_default().to_string();
    let members = packages
        .iter()
        .map(|p| Member {
            name: str_of(&p["name"]),
            version: str_of(&p["version"]),
            // `publish = false` reads as an empty list of registries.
            publish: p["publish"].as_array().is_none_or(|r| !r.is_empty()),
            manifest: PathBuf::from(str_of(&p["manifest_path"])),
            deps: p["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["path"].is_string() && d["name"].as_str().is_some_and(|n| names.contains(n)))
                .map(|d| Dep {
                    name: str_of(&d["name"]),
                    kind: match d["kind"].as_str() {
                        Some("dev") => DepKind::Dev,
                        Some("build") => DepKind::Build,
                        _ => DepKind::Normal,
                    },
                    req: str_of(&d["req"]),
                })
                .collect(),
        })
        .collect();
    Ok((root, members))
}

/// Runs `cargo args` in `dir`, echoing it.
fn cargo_in(dir: &Path, target_dir: &Path, args: &[&str]) -> Result<(), String> {
    eprintln!("$ (cd {} && cargo {})", dir.display(), args.join(" "));
    let ok = Command::new(cargo_bin())
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir)
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(()).ok_or_else(|| format!("cargo {} failed", args.join(" ")))
}

/// `git args` in `root`: its stdout, or an error with its stderr.
fn git(root: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git").arg("-C").arg(root).args(args).output().map_err(|e| format!("git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("git {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("fheml-release-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies the working tree's tracked and untracked-but-not-ignored files into `dest`.
fn copy_tree(root: &Path, dest: &Path) -> Result<usize, String> {
    let list = git(root, &["ls-files", "-z", "--cached", "--others", "--exclude-standard"])?;
    let mut copied = 0;
    for rel in list.split('\0').filter(|p| !p.is_empty()) {
        let from = root.join(rel);
        if !from.is_file() {
            continue; // deleted in the working tree, or a submodule
        }
        let to = dest.join(rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::copy(&from, &to).map_err(|e| format!("{rel}: {e}"))?;
        copied += 1;
    }
    Ok(copied)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Entry point

/// `cargo xtask release <version> [--execute] [--no-verify]`.
pub fn run(args: &[String]) -> Result<(), String> {
    let (mut version, mut execute, mut verify) = (None, false, true);
    for arg in args {
        match arg.as_str() {
            "--execute" => execute = true,
            "--no-verify" => verify = false,
            a if a.starts_with('-') => return Err(format!("unknown option `{a}`; {USAGE}")),
            a if version.is_none() => version = Some(a),
            a => return Err(format!("unexpected argument `{a}`; {USAGE}")),
        }
    }
    let to = Version::parse(version.ok_or(USAGE)?)?;
    let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
    let (root, members) = metadata(&cwd)?;

    // Refusals first, before any work.
    let mut current: Option<Version> = None;
    for m in &members {
        let v = Version::parse(&m.version).map_err(|e| format!("{}: {e}", m.name))?;
        if to.precedence(&v) != Ordering::Greater {
            return Err(format!("{to} is not greater than {}'s current version {v}", m.name));
        }
        if current.as_ref().is_none_or(|c| v.precedence(c) == Ordering::Greater) {
            current = Some(v);
        }
    }
    let current = current.ok_or("no workspace crates")?;
    publish_order(&members)?;
    let tag = format!("v{to}");
    if git(&root, &["rev-parse", "--quiet", "--verify", &format!("refs/tags/{tag}")]).is_ok() {
        return Err(format!("the tag {tag} exists already"));
    }
    let dirty = git(&root, &["status", "--porcelain"])?;
    if !dirty.trim().is_empty() {
        if execute {
            return Err(format!("the working tree is not clean; commit or stash first:\n{}", dirty.trim_end()));
        }
        eprintln!("note: the working tree is not clean; the dry run uses it as it is, uncommitted changes included");
    }
    let mode = if execute { "" } else { " (dry run: on a temporary copy, this tree is left as it is)" };
    println!("release {current} -> {to}{mode}");

    // The edits, in memory.
    let names: BTreeSet<String> = members.iter().map(|m| m.name.clone()).collect();
    let mut manifests: Vec<PathBuf> = vec![PathBuf::from("Cargo.toml")];
    for m in &members {
        let rel =
            m.manifest.strip_prefix(&root).map_err(|_| format!("{} is outside the workspace", m.manifest.display()))?;
        if !manifests.iter().any(|p| p == rel) {
            manifests.push(rel.to_path_buf());
        }
    }
    let mut edits: Vec<(PathBuf, String)> = Vec::new();
    for rel in &manifests {
        let text = std::fs::read_to_string(root.join(rel)).map_err(|e| format!("{}: {e}", rel.display()))?;
        let (next, changes) = bump_manifest(&text, &names, &to.text).map_err(|e| format!("{}: {e}", rel.display()))?;
        for change in changes {
            println!("  {}: {change}", rel.display());
        }
        if next != text {
            edits.push((rel.clone(), next));
        }
    }
    let changelog = PathBuf::from("CHANGELOG.md");
    let text = std::fs::read_to_string(root.join(&changelog)).map_err(|e| format!("CHANGELOG.md: {e}"))?;
    match changelog_with(&text, &to.text, &today())? {
        (next, Some((old, new))) => {
            println!("  CHANGELOG.md: `{old}` -> `{new}`");
            edits.push((changelog, next));
        }
        (_, None) => println!("  CHANGELOG.md: has a heading for {to}"),
    }

    // The bumped copy: Cargo.lock, the check, the packages.
    let tmp = TempDir::new()?;
    let copy = tmp.0.join("fheml");
    let files = copy_tree(&root, &copy)?;
    eprintln!("copied {files} files to {}", copy.display());
    for (rel, text) in &edits {
        write(&copy.join(rel), text)?;
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    cargo_in(&copy, &target_dir, &["update", "--workspace", "--offline"])?;
    let (_, bumped) = metadata(&copy)?;
    check_bumped(&bumped, &to.text)?;
    let order = publish_order(&bumped)?;
    println!("publish order: {}", order.crates.join(", "));
    if !order.skipped.is_empty() {
        println!("not published (publish = false): {}", order.skipped.join(", "));
    }
    println!(
        "packaging {} {to} in that order: one `cargo publish --dry-run` for them all, so that each crate's \
         workspace dependencies resolve to the {to} packages made before it (they are not on crates.io yet){}",
        if order.crates.len() == 1 { "the crate at" } else { "the crates at" },
        if verify { "; each package is built (--no-verify skips that)" } else { "; --no-verify: packaged, not built" }
    );
    let mut publish = vec!["publish", "--dry-run", "--allow-dirty"];
    if !verify {
        publish.push("--no-verify");
    }
    for c in &order.crates {
        publish.extend(["-p", c.as_str()]);
    }
    cargo_in(&copy, &target_dir, &publish)?;

    // Commit and tag.
    let mut paths: Vec<String> = edits.iter().map(|(rel, _)| rel.display().to_string()).collect();
    paths.push("Cargo.lock".into());
    let message = format!("release {to}");
    let tag_message = format!("fheml {to}");
    if execute {
        for (rel, text) in &edits {
            write(&root.join(rel), text)?;
        }
        std::fs::copy(copy.join("Cargo.lock"), root.join("Cargo.lock")).map_err(|e| format!("Cargo.lock: {e}"))?;
        let mut add = vec!["add", "--"];
        add.extend(paths.iter().map(String::as_str));
        git(&root, &add)?;
        git(&root, &["commit", "-m", &message])?;
        git(&root, &["tag", "-a", &tag, "-m", &tag_message])?;
        println!("committed `{message}` and tagged {tag}");
    } else {
        println!("would run:");
        println!("  git add {} && git commit -m \"{message}\"", paths.join(" "));
        println!("  git tag -a {tag} -m \"{tag_message}\"");
        println!("(`--execute` makes these edits here and runs them)");
    }
    println!("then, by hand: git push origin HEAD {tag}");
    for c in &order.crates {
        println!("  cargo publish -p {c}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn parses_semver_and_refuses_the_rest() {
        assert_eq!((v("1.22.333").major, v("1.22.333").minor, v("1.22.333").patch), (1, 22, 333));
        assert_eq!(v("1.0.0-rc.1").pre, vec![Ident::Alpha("rc".into()), Ident::Num(1)]);
        assert!(Version::parse("1.0.0+build.5").is_ok());
        assert!(Version::parse("1.0.0-x-y.0+sha.0abc").is_ok());
        for bad in ["1.2", "1.2.3.4", "v1.2.3", "01.2.3", "1.2.x", "", "1.2.3-", "1.2.3-01", "1.2.3-a..b", "1.2.3+"] {
            assert!(Version::parse(bad).is_err(), "{bad} accepted");
        }
        assert!(Version::parse("v1.2.3").unwrap_err().contains("leading `v`"));
    }

    #[test]
    fn orders_versions_by_semver_precedence() {
        let chain = [
            "0.1.0",
            "0.1.1",
            "0.2.0-alpha",
            "0.2.0-alpha.1",
            "0.2.0-alpha.beta",
            "0.2.0-beta.2",
            "0.2.0-beta.11",
            "0.2.0-rc.1",
            "0.2.0",
            "0.10.0",
            "1.0.0",
        ];
        for w in chain.windows(2) {
            assert_eq!(v(w[0]).precedence(&v(w[1])), Ordering::Less, "{} < {}", w[0], w[1]);
            assert_eq!(v(w[1]).precedence(&v(w[0])), Ordering::Greater);
        }
        assert_eq!(v("1.0.0+a").precedence(&v("1.0.0+b")), Ordering::Equal);
    }

    fn members() -> BTreeSet<String> {
        ["fheml-quant", "fheml-circuits", "renamed-real"].iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn bumps_the_workspace_manifest() {
        let manifest = r#"[workspace]
members = [
    "quant",
]

[workspace.package]
version = "0.1.0"
edition = "2024"

[workspace.dependencies]
fheml-quant = { path = "quant", version = "0.1.0" }
fheml-circuits = { version = "=0.1.0", path = "circuits", features = ["a", "b"] } # pinned
serde = { version = "0.1.0" }
other = { path = "other", version = "0.1.0" }
fheml-quant-old = { package = "fheml-quant", path = "quant", version = "0.1" }
"#;
        let (next, changes) = bump_manifest(manifest, &members(), "0.2.0").unwrap();
        assert_eq!(
            next,
            manifest
                .replace("version = \"0.1.0\"\nedition", "version = \"0.2.0\"\nedition")
                .replace("quant\", version = \"0.1.0\"", "quant\", version = \"0.2.0\"")
                .replace("\"=0.1.0\"", "\"=0.2.0\"")
                .replace("version = \"0.1\" }", "version = \"0.2.0\" }")
        );
        assert!(next.contains("serde = { version = \"0.1.0\" }"));
        assert!(next.contains("other = { path = \"other\", version = \"0.1.0\" }"));
        assert_eq!(changes.len(), 4, "{changes:?}");
        assert_eq!(changes[0], "line 7: version 0.1.0 -> 0.2.0");
    }

    #[test]
    fn bumps_a_crate_manifest() {
        let manifest = "[package]\nname = \"xtask\"\nversion = \"0.1.0\"\nrust-version.workspace = true\n\n\
            [dependencies]\nfheml-quant.workspace = true\nfheml-circuits = { workspace = true }\nserde = \"1\"\n\n\
            [target.'cfg(unix)'.dev-dependencies]\nfheml-quant = { path = \"../quant\", version = \"0.1.0\" }\n\n\
            [build-dependencies.qq]\npackage = \"fheml-quant\"\nversion = \"~0.1.0\"\npath = \"../quant\"\n\n\
            [dependencies.serde_json]\nversion = \"0.1.0\"\n";
        let (next, changes) = bump_manifest(manifest, &members(), "1.0.0-rc.1").unwrap();
        assert!(next.starts_with("[package]\nname = \"xtask\"\nversion = \"1.0.0-rc.1\"\n"));
        assert!(next.contains("fheml-quant = { path = \"../quant\", version = \"1.0.0-rc.1\" }"));
        assert!(next.contains("version = \"~1.0.0-rc.1\"\npath"));
        assert!(next.ends_with("[dependencies.serde_json]\nversion = \"0.1.0\"\n"));
        assert_eq!(changes.len(), 3, "{changes:?}");
        // Inherited versions are left alone; the workspace manifest carries them.
        let inherited = "[package]\nname = \"a\"\nversion.workspace = true\n";
        assert_eq!(bump_manifest(inherited, &members(), "9.9.9").unwrap(), (inherited.to_string(), vec![]));
        // A range cannot be bumped by rewriting the version in it.
        let range = "[dependencies]\nfheml-quant = { path = \"q\", version = \">=0.1, <0.3\" }\n";
        assert!(bump_manifest(range, &members(), "0.2.0").is_err());
    }

    #[test]
    fn keeps_crlf_line_endings() {
        let manifest = "[package]\r\nversion = \"0.1.0\"\r\n";
        assert_eq!(bump_manifest(manifest, &members(), "0.1.1").unwrap().0, "[package]\r\nversion = \"0.1.1\"\r\n");
    }

    fn member(name: &str, publish: bool, deps: &[(&str, DepKind, &str)]) -> Member {
        Member {
            name: name.into(),
            version: "0.1.0".into(),
            publish,
            manifest: PathBuf::from(format!("{name}/Cargo.toml")),
            deps: deps
                .iter()
                .map(|(n, kind, req)| Dep { name: n.to_string(), kind: *kind, req: req.to_string() })
                .collect(),
        }
    }

    #[test]
    fn orders_crates_after_their_dependencies() {
        use DepKind::*;
        // This workspace's shape: linear's dev-dependency on the runtime puts it after the runtime.
        let ws = [
            member(
                "cli",
                true,
                &[("linear", Normal, "^0.1.0"), ("runtime", Normal, "^0.1.0"), ("nn", Normal, "^0.1.0")],
            ),
            member(
                "linear",
                true,
                &[("quant", Normal, "^0.1.0"), ("circuits", Normal, "^0.1.0"), ("runtime", Dev, "^0.1.0")],
            ),
            member("runtime", true, &[("circuits", Normal, "^0.1.0"), ("quant", Build, "^0.1.0")]),
            member("nn", true, &[("circuits", Normal, "^0.1.0"), ("xtask", Dev, "*")]),
            member("circuits", true, &[("quant", Normal, "^0.1.0")]),
            member("quant", true, &[]),
            member("xtask", false, &[("quant", Normal, "^0.1.0")]),
        ];
        let order = publish_order(&ws).unwrap();
        assert_eq!(order.crates, ["quant", "circuits", "nn", "runtime", "linear", "cli"]);
        assert_eq!(order.skipped, ["xtask"]);
    }

    #[test]
    fn refuses_cycles_and_unpublishable_dependencies() {
        use DepKind::*;
        let cyclic = [
            member("a", true, &[("b", Normal, "^0.1.0")]),
            member("b", true, &[("c", Dev, "^0.1.0")]),
            member("c", true, &[("a", Build, "^0.1.0")]),
            member("d", true, &[]),
        ];
        let err = publish_order(&cyclic).unwrap_err();
        assert!(err.contains("cycle") && err.contains("a -> b -> c -> a"), "{err}");
        // A dev-dependency without a version is dropped by cargo publish, so it makes no cycle.
        let dropped = [member("a", true, &[("b", Normal, "^0.1.0")]), member("b", true, &[("a", Dev, "*")])];
        assert_eq!(publish_order(&dropped).unwrap().crates, ["b", "a"]);
        let private = [member("a", true, &[("p", Normal, "^0.1.0")]), member("p", false, &[])];
        assert!(publish_order(&private).unwrap_err().contains("publish = false"));
        let unversioned = [member("a", true, &[("b", Normal, "*")]), member("b", true, &[])];
        assert!(publish_order(&unversioned).unwrap_err().contains("without a version"));
    }

    #[test]
    fn checks_the_bumped_metadata() {
        let mut ws =
            [member("a", true, &[("b", DepKind::Normal, "^0.2.0"), ("c", DepKind::Dev, "*")]), member("b", true, &[])];
        for m in &mut ws {
            m.version = "0.2.0".into();
        }
        assert!(check_bumped(&ws, "0.2.0").is_ok());
        ws[0].deps[0].req = "^0.1.0".into();
        assert!(check_bumped(&ws, "0.2.0").unwrap_err().contains("a requires b ^0.1.0"));
    }

    #[test]
    fn renames_the_unreleased_heading() {
        let log = "# Changelog\n\n## [Unreleased]\n\n- A change.\n\n## [0.1.0] - 2026-11-24\n\nFirst release.\n";
        let (next, renamed) = changelog_with(log, "0.2.0", "2027-01-02").unwrap();
        assert_eq!(next, log.replace("## [Unreleased]", "## [0.2.0] - 2027-01-02"));
        assert_eq!(renamed, Some(("## [Unreleased]".into(), "## [0.2.0] - 2027-01-02".into())));
        // A heading for the version already there: nothing to do.
        assert_eq!(changelog_with(&next, "0.2.0", "2027-01-03").unwrap(), (next.clone(), None));
        assert_eq!(changelog_with("## v0.3.0 (soon)\n- x\n", "0.3.0", "d").unwrap().1, None);
        // Neither: write one first. An empty Unreleased section: nothing to release.
        assert!(changelog_with(log, "0.1.1", "d").is_ok());
        assert!(changelog_with(&next, "0.3.0", "d").unwrap_err().contains("write one first"));
        let empty = "# Changelog\n\n## Unreleased\n\n## [0.1.0] - 2026-11-24\n- x\n";
        assert!(changelog_with(empty, "0.2.0", "d").unwrap_err().contains("empty"));
    }

    #[test]
    fn dates_from_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_819), (2027, 1, 1));
    }
}
