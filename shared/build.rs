//! Embeds every `presets/*.toml` in the crate, so that adding a platform preset is adding a
//! file: no Rust to change, and nothing read from disk at run time.

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
    let out = Path::new(&env::var("OUT_DIR").expect("set by cargo")).join("presets.rs");
    fs::write(out, code).expect("OUT_DIR is writable");
}
