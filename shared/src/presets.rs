//! The platform presets shipped with leadrelay: one TOML file per platform in
//! `shared/presets/`, embedded at build time. A preset holds a source's `scheme`, its
//! `[signature]` and its `[mapping]`; a source that names it may override any key.

include!(concat!(env!("OUT_DIR"), "/presets.rs"));

/// The preset's TOML text.
pub fn find(name: &str) -> Option<&'static str> {
    PRESETS
        .iter()
        .find(|(preset, _)| *preset == name)
        .map(|(_, text)| *text)
}

/// Every preset name, sorted.
pub fn names() -> impl Iterator<Item = &'static str> {
    PRESETS.iter().map(|(name, _)| *name)
}
