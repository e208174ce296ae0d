//! The crate's shape, checked (issue 18). Its top-level modules form no circle: every `crate::x`
//! a module's non-test code names is an edge, and the graph of edges between top-level modules
//! must be acyclic, so each module can be read (and changed) knowing only the ones below it. No
//! file holds more than [`MAX_FILE_LINES`] lines of non-test code, and no function is longer
//! than [`MAX_FN_LINES`] lines: a file has one job, a function fits on a screen.
//!
//! Read with `syn` from the module tree that `src/lib.rs` declares (`mod x;` → `x.rs` or
//! `x/mod.rs`, `#[path]` honoured; `#[cfg(test)]` items and files skipped). Paths inside macro
//! invocations are not seen; `use` trees and every other path are.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// Lines of non-test code a file may hold (up to the end of its last non-test item).
const MAX_FILE_LINES: usize = 600;
/// Lines a function may span, from `fn` to its closing brace (doc comments not counted).
const MAX_FN_LINES: usize = 80;

/// Top-level module → the top-level modules its non-test code names.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

/// Collects the second segment of every `crate::…` path and `use crate::{…}` tree.
#[derive(Default)]
struct Uses(BTreeSet<String>);

impl Uses {
    fn tree(&mut self, t: &syn::UseTree, under_crate: bool) {
        match t {
            syn::UseTree::Path(p) if !under_crate => self.tree(&p.tree, p.ident == "crate"),
            syn::UseTree::Path(p) => {
                self.0.insert(p.ident.to_string());
            }
            syn::UseTree::Name(n) if under_crate => {
                self.0.insert(n.ident.to_string());
            }
            syn::UseTree::Rename(r) if under_crate => {
                self.0.insert(r.ident.to_string());
            }
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| self.tree(t, under_crate)),
            _ => {}
        }
    }
}

impl<'ast> Visit<'ast> for Uses {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        let mut seg = p.segments.iter();
        if let (Some(first), Some(second)) = (seg.next(), seg.next()) {
            if first.ident == "crate" {
                self.0.insert(second.ident.to_string());
            }
        }
        syn::visit::visit_path(self, p);
    }
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.tree(&u.tree, false);
    }
    fn visit_item(&mut self, i: &'ast syn::Item) {
        let attrs = match i {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(m) => &m.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Struct(s) => &s.attrs,
            _ => return syn::visit::visit_item(self, i),
        };
        if !is_test_only(attrs) {
            syn::visit::visit_item(self, i);
        }
    }
}

/// The non-test files of module `name` declared in `dir` by `file` (recursively).
fn module_files(file: &Path, dir: &Path, out: &mut Vec<(PathBuf, syn::File)>) {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    for item in &ast.items {
        let syn::Item::Mod(m) = item else { continue };
        if m.content.is_some() || is_test_only(&m.attrs) {
            continue;
        }
        let child = explicit_path(&m.attrs)
            .map(|p| dir.join(p))
            .unwrap_or_else(|| {
                let flat = dir.join(format!("{}.rs", m.ident));
                if flat.exists() {
                    flat
                } else {
                    dir.join(m.ident.to_string()).join("mod.rs")
                }
            });
        let child_dir = if child.file_name().is_some_and(|n| n == "mod.rs") {
            child.parent().unwrap_or(dir).to_path_buf()
        } else {
            dir.join(m.ident.to_string())
        };
        module_files(&child, &child_dir, out);
    }
    out.push((file.to_path_buf(), ast));
}

fn explicit_path(attrs: &[syn::Attribute]) -> Option<String> {
    attrs
        .iter()
        .find(|a| a.path().is_ident("path"))
        .and_then(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
}

/// The graph of the crate rooted at `src/lib.rs`.
fn graph(src: &Path) -> Graph {
    let lib = syn::parse_file(&std::fs::read_to_string(src.join("lib.rs")).unwrap()).unwrap();
    let top: Vec<_> = lib
        .items
        .iter()
        .filter_map(|i| match i {
            syn::Item::Mod(m) if m.content.is_none() && !is_test_only(&m.attrs) => {
                Some(m.ident.to_string())
            }
            _ => None,
        })
        .collect();
    let mut g = Graph::new();
    for name in &top {
        let flat = src.join(format!("{name}.rs"));
        let (file, dir) = if flat.exists() {
            (flat, src.join(name))
        } else {
            (src.join(name).join("mod.rs"), src.join(name))
        };
        let mut files = Vec::new();
        module_files(&file, &dir, &mut files);
        let mut uses = Uses::default();
        for (_, ast) in &files {
            uses.visit_file(ast);
        }
        let edges = uses
            .0
            .into_iter()
            .filter(|m| m != name && top.contains(m))
            .collect();
        g.insert(name.clone(), edges);
    }
    g
}

/// Every circle, each as the modules on it (strongly connected components of two or more).
fn circles(g: &Graph) -> Vec<Vec<String>> {
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(m) = todo.pop() {
            for n in g.get(&m).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<_, _> = g.keys().map(|m| (m.clone(), reach(m))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    for m in g.keys() {
        let comp: Vec<String> = g
            .keys()
            .filter(|n| *n == m || (reaches[m].contains(*n) && reaches[*n].contains(m)))
            .cloned()
            .collect();
        if comp.len() > 1 && !out.contains(&comp) {
            out.push(comp);
        }
    }
    out
}

#[test]
fn no_circle_between_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    assert!(g.len() > 20, "the module tree was not read: {g:?}");
    // The reader sees real edges (a reader that sees none would pass vacuously).
    assert!(
        g["reconcile"].contains("plan") && g["cli"].contains("daemon"),
        "{g:?}"
    );
    let found = circles(&g);
    let shown: Vec<String> = found
        .iter()
        .map(|c| {
            let edges: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    g[a].iter()
                        .filter(|b| c.contains(b))
                        .map(move |b| format!("{a} -> {b}"))
                })
                .collect();
            edges.join(", ")
        })
        .collect();
    assert!(
        found.is_empty(),
        "circles between top-level modules: {shown:?}"
    );
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let g: Graph = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(
        circles(&g),
        vec![vec!["a".to_string(), "b".into(), "c".into()]]
    );
}

/// Every non-test file of the crate, parsed.
fn all_files(src: &Path) -> Vec<(PathBuf, syn::File)> {
    let mut files = Vec::new();
    module_files(&src.join("lib.rs"), src, &mut files);
    files
}

/// Collects functions longer than [`MAX_FN_LINES`] outside test items.
struct LongFns<'p> {
    file: &'p Path,
    found: Vec<String>,
}

impl LongFns<'_> {
    fn check(&mut self, name: &syn::Ident, start: usize, end: usize) {
        let lines = end + 1 - start;
        if lines > MAX_FN_LINES {
            let f = self.file.display();
            self.found
                .push(format!("{f}:{start} fn {name}: {lines} lines"));
        }
    }
}

impl<'ast> Visit<'ast> for LongFns<'_> {
    fn visit_item(&mut self, i: &'ast syn::Item) {
        let test_only = match i {
            syn::Item::Mod(m) => is_test_only(&m.attrs),
            syn::Item::Fn(f) => is_test_only(&f.attrs),
            syn::Item::Impl(m) => is_test_only(&m.attrs),
            _ => false,
        };
        if !test_only {
            syn::visit::visit_item(self, i);
        }
    }
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        let start = f.sig.fn_token.span.start().line;
        self.check(
            &f.sig.ident,
            start,
            f.block.brace_token.span.close().end().line,
        );
        syn::visit::visit_item_fn(self, f);
    }
    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        let start = f.sig.fn_token.span.start().line;
        self.check(
            &f.sig.ident,
            start,
            f.block.brace_token.span.close().end().line,
        );
        syn::visit::visit_impl_item_fn(self, f);
    }
    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let Some(block) = &f.default {
            let start = f.sig.fn_token.span.start().line;
            self.check(
                &f.sig.ident,
                start,
                block.brace_token.span.close().end().line,
            );
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}

/// The last line of a file's non-test code: the end of its last item that is not `#[cfg(test)]`.
fn non_test_lines(ast: &syn::File) -> usize {
    use syn::spanned::Spanned;
    ast.items
        .iter()
        .filter(|i| {
            let attrs = match i {
                syn::Item::Mod(m) => &m.attrs,
                syn::Item::Fn(f) => &f.attrs,
                syn::Item::Impl(m) => &m.attrs,
                syn::Item::Use(u) => &u.attrs,
                _ => return true,
            };
            !is_test_only(attrs)
        })
        .map(|i| i.span().end().line)
        .max()
        .unwrap_or(0)
}

#[test]
fn no_non_test_file_is_over_600_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = all_files(&src);
    assert!(files.len() > 40, "the module tree was not read");
    let long: Vec<String> = files
        .iter()
        .map(|(path, ast)| (path, non_test_lines(ast)))
        .filter(|(_, n)| *n > MAX_FILE_LINES)
        .map(|(path, n)| format!("{}: {n} lines", path.display()))
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} non-test lines: {long:#?}"
    );
}

#[test]
fn no_function_is_over_80_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for (path, ast) in all_files(&src) {
        let mut v = LongFns {
            file: &path,
            found: Vec::new(),
        };
        v.visit_file(&ast);
        found.extend(v.found);
    }
    assert!(
        found.is_empty(),
        "functions over {MAX_FN_LINES} lines: {found:#?}"
    );
}

#[test]
fn the_size_checks_see_long_functions_and_files() {
    let text = format!(
        "fn short() {{}}\nfn long() {{\n{}}}\n#[cfg(test)]\nmod tests {{\n{}}}\n",
        "    let _ = 1;\n".repeat(MAX_FN_LINES),
        "    fn in_tests() {}\n".repeat(MAX_FILE_LINES)
    );
    let ast = syn::parse_file(&text).unwrap();
    let mut v = LongFns {
        file: Path::new("x.rs"),
        found: Vec::new(),
    };
    v.visit_file(&ast);
    assert_eq!(
        v.found,
        vec![format!("x.rs:2 fn long: {} lines", MAX_FN_LINES + 2)]
    );
    assert_eq!(non_test_lines(&ast), MAX_FN_LINES + 3);
}
