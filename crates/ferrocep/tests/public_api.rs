//! The public API, recorded: `api/ferrocep-core.txt`, `api/ferrocep.txt` and
//! `api/ferrocep-runtime.txt`
//! list every `pub` item of the three crates, with signatures and no bodies,
//! so that a change to the API shows in review as a change to those files.
//!
//! The listing is made from the source with `syn` (stable Rust: rustdoc's
//! JSON output, which cargo-public-api reads, needs nightly). It lists what
//! is marked `pub`, module by module, whether or not a private module
//! hides it; `pub use` lines show the re-exports. This test fails when a
//! listing differs from its file; `scripts/public-api.sh` (or
//! `FERROCEP_BLESS_API=1` on this test) writes them anew.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use syn::{Attribute, ImplItem, Item, TraitItem, Visibility};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether `attrs` leave the item out of a normal build (`#[cfg(test)]`,
/// `#[cfg(doctest)]`).
fn test_only(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg") && {
            let t = a.meta.require_list().map(|l| l.tokens.to_string());
            matches!(t.as_deref(), Ok("test") | Ok("doctest"))
        }
    })
}

/// The attributes that are part of the API: derives, `non_exhaustive`,
/// `repr`, `cfg` (feature gates), `must_use`.
fn api_attrs(attrs: &mut Vec<Attribute>) {
    attrs.retain(|a| {
        ["derive", "non_exhaustive", "repr", "cfg", "must_use"]
            .iter()
            .any(|n| a.path().is_ident(n))
    });
}

fn is_pub(v: &Visibility) -> bool {
    matches!(v, Visibility::Public(_))
}

fn empty_block() -> syn::Block {
    syn::parse_quote!({})
}

/// A module's file: `dir/name.rs` or `dir/name/mod.rs` (`#[path]` is not used here).
fn module_file(dir: &Path, name: &str) -> PathBuf {
    let flat = dir.join(format!("{name}.rs"));
    if flat.exists() {
        flat
    } else {
        dir.join(name).join("mod.rs")
    }
}

struct Lister {
    /// Names of the public types, to keep only their impls.
    types: BTreeSet<String>,
    out: String,
}

impl Lister {
    /// Collects the names of public types, then lists each module.
    fn list(file: &Path) -> String {
        let mut l = Lister {
            types: BTreeSet::new(),
            out: String::new(),
        };
        l.walk(file, "crate", &mut |l, items, _| {
            for item in items {
                let name = match item {
                    Item::Struct(s) if is_pub(&s.vis) => s.ident.to_string(),
                    Item::Enum(e) if is_pub(&e.vis) => e.ident.to_string(),
                    Item::Union(u) if is_pub(&u.vis) => u.ident.to_string(),
                    Item::Type(t) if is_pub(&t.vis) => t.ident.to_string(),
                    Item::Trait(t) if is_pub(&t.vis) => t.ident.to_string(),
                    _ => continue,
                };
                l.types.insert(name);
            }
        });
        l.walk(file, "crate", &mut |l, items, path| {
            let kept: Vec<Item> = items.iter().filter_map(|i| l.keep(i)).collect();
            if !kept.is_empty() {
                let file = syn::File {
                    shebang: None,
                    attrs: Vec::new(),
                    items: kept,
                };
                let _ = writeln!(l.out, "// {path}\n{}", prettyplease::unparse(&file));
            }
        });
        l.out
    }

    /// Calls `f` with the items of the module in `file` and of each module
    /// under it, depth first, in source order.
    fn walk(&mut self, file: &Path, path: &str, f: &mut dyn FnMut(&mut Self, &[Item], &str)) {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let parsed = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        // The directory of this module's children.
        let dir = match file.file_name().and_then(|n| n.to_str()) {
            Some("lib.rs" | "mod.rs" | "main.rs") => file.parent().unwrap().to_path_buf(),
            _ => file.with_extension(""),
        };
        self.items(&parsed.items, &dir, path, f);
    }

    fn items(
        &mut self,
        items: &[Item],
        dir: &Path,
        path: &str,
        f: &mut dyn FnMut(&mut Self, &[Item], &str),
    ) {
        f(self, items, path);
        for item in items {
            let Item::Mod(m) = item else { continue };
            if test_only(&m.attrs) {
                continue;
            }
            let child = format!("{path}::{}", m.ident);
            match &m.content {
                Some((_, inner)) => self.items(inner, &dir.join(m.ident.to_string()), &child, f),
                None => self.walk(&module_file(dir, &m.ident.to_string()), &child, f),
            }
        }
    }

    /// The item as listed (no docs, no bodies, public parts only), or
    /// `None` when it is not public.
    fn keep(&self, item: &Item) -> Option<Item> {
        let attrs = match item {
            Item::Const(i) => &i.attrs,
            Item::Static(i) => &i.attrs,
            Item::Type(i) => &i.attrs,
            Item::Use(i) => &i.attrs,
            Item::Mod(i) => &i.attrs,
            Item::Fn(i) => &i.attrs,
            Item::Struct(i) => &i.attrs,
            Item::Enum(i) => &i.attrs,
            Item::Trait(i) => &i.attrs,
            Item::Impl(i) => &i.attrs,
            _ => return None,
        };
        if test_only(attrs) {
            return None;
        }
        let mut item = item.clone();
        match &mut item {
            Item::Const(c) if is_pub(&c.vis) => api_attrs(&mut c.attrs),
            Item::Static(s) if is_pub(&s.vis) => api_attrs(&mut s.attrs),
            Item::Type(t) if is_pub(&t.vis) => api_attrs(&mut t.attrs),
            Item::Use(u) if is_pub(&u.vis) => api_attrs(&mut u.attrs),
            Item::Mod(m) if is_pub(&m.vis) => {
                api_attrs(&mut m.attrs);
                m.content = None;
                m.semi = Some(Default::default());
            }
            Item::Fn(func) if is_pub(&func.vis) => {
                api_attrs(&mut func.attrs);
                *func.block = empty_block();
            }
            Item::Struct(s) if is_pub(&s.vis) => {
                api_attrs(&mut s.attrs);
                let fields = match &mut s.fields {
                    syn::Fields::Named(n) => Some(&mut n.named),
                    syn::Fields::Unnamed(u) => Some(&mut u.unnamed),
                    syn::Fields::Unit => None,
                };
                if let Some(fields) = fields {
                    let kept = std::mem::take(fields)
                        .into_iter()
                        .filter(|f| is_pub(&f.vis))
                        .map(|mut f| {
                            api_attrs(&mut f.attrs);
                            f
                        });
                    fields.extend(kept);
                }
            }
            Item::Enum(e) if is_pub(&e.vis) => {
                api_attrs(&mut e.attrs);
                for v in &mut e.variants {
                    api_attrs(&mut v.attrs);
                    for f in v.fields.iter_mut() {
                        api_attrs(&mut f.attrs);
                    }
                }
            }
            Item::Trait(t) if is_pub(&t.vis) => {
                api_attrs(&mut t.attrs);
                for i in &mut t.items {
                    match i {
                        TraitItem::Fn(f) => {
                            api_attrs(&mut f.attrs);
                            f.default = None;
                            f.semi_token = Some(Default::default());
                        }
                        TraitItem::Type(t) => api_attrs(&mut t.attrs),
                        TraitItem::Const(c) => {
                            api_attrs(&mut c.attrs);
                            c.default = None;
                        }
                        _ => {}
                    }
                }
            }
            Item::Impl(imp) => {
                let syn::Type::Path(tp) = &*imp.self_ty else {
                    return None;
                };
                let name = tp.path.segments.last()?.ident.to_string();
                if !self.types.contains(&name) {
                    return None;
                }
                api_attrs(&mut imp.attrs);
                let of_trait = imp.trait_.is_some();
                imp.items.retain_mut(|i| match i {
                    ImplItem::Fn(f) if of_trait || is_pub(&f.vis) => {
                        api_attrs(&mut f.attrs);
                        f.block = empty_block();
                        true
                    }
                    ImplItem::Const(c) if of_trait || is_pub(&c.vis) => {
                        api_attrs(&mut c.attrs);
                        true
                    }
                    ImplItem::Type(t) => {
                        api_attrs(&mut t.attrs);
                        true
                    }
                    _ => false,
                });
                if !of_trait && imp.items.is_empty() {
                    return None;
                }
            }
            _ => return None,
        }
        Some(item)
    }
}

/// Compares the listing of the crate at `src` with `api/NAME.txt`, or
/// writes it there when blessing.
fn check(name: &str, src: &str) {
    let root = root();
    let listing = Lister::list(&root.join(src));
    let file = root.join("api").join(format!("{name}.txt"));
    if std::env::var_os("FERROCEP_BLESS_API").is_some() {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, &listing).unwrap();
        return;
    }
    let recorded = std::fs::read_to_string(&file).unwrap_or_default();
    if recorded != listing {
        let first = recorded
            .lines()
            .zip(listing.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| recorded.lines().count().min(listing.lines().count()));
        panic!(
            "the public API of {name} differs from {} (first at line {}: now `{}`); \
             if the change is meant, run scripts/public-api.sh and commit the file",
            file.display(),
            first + 1,
            listing.lines().nth(first).unwrap_or("<end>"),
        );
    }
}

#[test]
fn ferrocep_core_api_is_recorded() {
    check("ferrocep-core", "crates/ferrocep-core/src/lib.rs");
}

#[test]
fn ferrocep_api_is_recorded() {
    check("ferrocep", "crates/ferrocep/src/lib.rs");
}

/// The runtime, re-exported as `ferrocep::runtime`.
#[test]
fn ferrocep_runtime_api_is_recorded() {
    check("ferrocep-runtime", "crates/ferrocep-runtime/src/lib.rs");
}
