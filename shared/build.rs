//! Embeds every `presets/*.toml` in the crate, so that adding a platform preset is adding a
//! file: no Rust to change, and nothing read from disk at run time. Also writes the
//! disposable-mailbox domains of the `mailchecker` crate as one text ([`disposable_domains`]).

use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

fn main() {
    let dir = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("set by cargo")).join("presets");
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut names: Vec<(String, String)> = fs::read_dir(&dir)
        .expect("shared/presets exists")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .map(|path| {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("preset file names are UTF-8")
                .to_owned();
            (name, path.display().to_string())
        })
        .collect();
    names.sort();
    let mut code = String::from("/// Every shipped preset: (name, TOML text), by name.\n");
    code.push_str("pub static PRESETS: &[(&str, &str)] = &[\n");
    for (name, path) in &names {
        println!("cargo::rerun-if-changed={path}");
        writeln!(code, "    ({name:?}, include_str!({path:?})),").expect("string");
    }
    code.push_str("];\n");
    let out = std::path::PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    fs::write(out.join("presets.rs"), code).expect("OUT_DIR is writable");
    disposable_domains(&out);
}

/// `disposable_domains.txt`: mailchecker's list, one domain a line, lower case, sorted, each
/// once. Embedded with `include_str!`, it is one string in the binary's read-only data, where
/// the crate's own `&'static [&'static str]` would also put a pointer and a relocation per
/// domain into every position-independent executable that links it (about 2 MB unzipped).
fn disposable_domains(out: &Path) {
    let mut domains: Vec<String> = mailchecker::blacklist()
        .into_iter()
        .map(str::to_ascii_lowercase)
        .collect();
    domains.sort_unstable();
    domains.dedup();
    let mut text = domains.join("\n");
    text.push('\n');
    fs::write(out.join("disposable_domains.txt"), text).expect("OUT_DIR is writable");
}
