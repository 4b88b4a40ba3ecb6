//! No import circle in `src/`: every module stands above what it imports.
//!
//! The check reads the library's sources as text (no compiler, no new
//! dependency), so a reader can run it alone: `cargo test --test import_graph`.
//! Each file is a node; an edge goes from a file to the file that *defines*
//! what it names through `crate::`, `super::`, `self::` or a child module,
//! in a `use` (grouped forms included) or inline in code
//! (`crate::client_conn::request_done(..)`). The rules:
//!
//! - A path resolves to the longest module prefix that is a file
//!   (`crate::limits::redis_store::RedisStore` → `src/limits/redis_store/mod.rs`).
//!   Re-exports are not followed: a file naming `crate::client_conn::ConnCounts`
//!   depends on the module `client_conn` as a whole, whose face is its
//!   `mod.rs`, whatever file the item sits in.
//! - `mod foo;` is not an import; `pub use foo::X` in a `mod.rs` is, of the
//!   child. So a child that names anything through its parent (`super::X`)
//!   while the parent imports the child is a circle like any other: a child
//!   names its siblings directly (`super::spec::Spec`), and what the children
//!   share lives in a file of its own.
//! - Test code is left out: `tests.rs`, `*_tests.rs`, and items under
//!   `#[cfg(test)]`. So are the binaries (`src/main.rs`, `src/bin/`): nothing
//!   in the library can import them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
}

/// Identifiers, `::` and punctuation, with comments, string, char and
/// number literals and lifetimes dropped: a `crate::x` inside a string or a
/// comment is not an import.
fn tokenize(src: &str) -> Vec<Token> {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Skips a quoted literal whose opening quote is at `i`, escapes honoured.
    let skip_quoted = |mut i: usize, line: &mut usize| -> usize {
        i += 1;
        while i < c.len() && c[i] != '"' {
            if c[i] == '\\' {
                i += 1;
            }
            if at(i) == '\n' {
                *line += 1;
            }
            i += 1;
        }
        i + 1
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            loop {
                if i >= c.len() {
                    break;
                }
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_quoted(i, &mut line);
        } else if ch == '\'' {
            if at(i + 1) == '\\' {
                // An escaped char literal: '\n', '\'', '\u{1F600}'.
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                // A lifetime or label: drop the quote and its name.
                i += 1;
                while at(i).is_alphanumeric() || at(i) == '_' {
                    i += 1;
                }
            }
        } else if ch.is_ascii_digit() {
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let next = at(i);
            match word.as_str() {
                // Raw strings: r"..", r#".."#, br"..", cr#".."#.
                "r" | "br" | "cr"
                    if next == '"' || (next == '#' && matches!(at(i + 1), '#' | '"')) =>
                {
                    let mut hashes = 0;
                    while at(i) == '#' {
                        hashes += 1;
                        i += 1;
                    }
                    i += 1;
                    loop {
                        if i >= c.len() {
                            break;
                        }
                        if c[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                            i += 1 + hashes;
                            break;
                        }
                        if c[i] == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
                // A raw identifier: r#type.
                "r" if next == '#' => {
                    let start = i + 1;
                    i += 1;
                    while at(i).is_alphanumeric() || at(i) == '_' {
                        i += 1;
                    }
                    out.push(Token {
                        tok: Tok::Ident(c[start..i].iter().collect()),
                        line,
                    });
                }
                "b" | "c" if next == '"' => i = skip_quoted(i, &mut line),
                "b" if next == '\'' => {
                    i += 1;
                    if at(i + 1) == '\\' {
                        i += 3;
                        while i < c.len() && c[i] != '\'' {
                            i += 1;
                        }
                        i += 1;
                    } else {
                        i += 3;
                    }
                }
                _ => out.push(Token {
                    tok: Tok::Ident(word),
                    line,
                }),
            }
        } else if ch == ':' && at(i + 1) == ':' {
            out.push(Token {
                tok: Tok::PathSep,
                line,
            });
            i += 2;
        } else {
            out.push(Token {
                tok: Tok::Punct(ch),
                line,
            });
            i += 1;
        }
    }
    out
}

fn is_ident(t: Option<&Token>, word: &str) -> bool {
    matches!(t, Some(Token { tok: Tok::Ident(w), .. }) if w == word)
}

fn is_punct(t: Option<&Token>, p: char) -> bool {
    matches!(t, Some(Token { tok: Tok::Punct(c), .. }) if *c == p)
}

/// The index just past the bracketed group opening at `i` (`(`, `[`, `{`).
fn skip_group(t: &[Token], mut i: usize) -> usize {
    let mut depth = 0i32;
    while i < t.len() {
        match t[i].tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

/// Whether the attribute whose `[` is at `i` is exactly `[cfg(test)]`.
fn is_cfg_test(t: &[Token], i: usize) -> bool {
    is_punct(t.get(i), '[')
        && is_ident(t.get(i + 1), "cfg")
        && is_punct(t.get(i + 2), '(')
        && is_ident(t.get(i + 3), "test")
        && is_punct(t.get(i + 4), ')')
        && is_punct(t.get(i + 5), ']')
}

/// The tokens without test-only code: an item under `#[cfg(test)]` is
/// dropped up to its `;` or its closing brace; a file that starts with
/// `#![cfg(test)]` is dropped whole.
fn without_test_code(t: Vec<Token>) -> Vec<Token> {
    let mut out = Vec::with_capacity(t.len());
    let mut i = 0;
    while i < t.len() {
        if is_punct(t.get(i), '#') && is_punct(t.get(i + 1), '!') && is_cfg_test(&t, i + 2) {
            return Vec::new();
        }
        if is_punct(t.get(i), '#') && is_cfg_test(&t, i + 1) {
            i += 7;
            // Further attributes of the same item.
            while is_punct(t.get(i), '#') && is_punct(t.get(i + 1), '[') {
                i = skip_group(&t, i + 1);
            }
            // The item: to a `;` outside brackets, or through its body.
            let mut depth = 0i32;
            while i < t.len() {
                match t[i].tok {
                    Tok::Punct('(' | '[') => depth += 1,
                    Tok::Punct(')' | ']') => depth -= 1,
                    Tok::Punct(';') if depth == 0 => {
                        i += 1;
                        break;
                    }
                    Tok::Punct('{') if depth == 0 => {
                        i = skip_group(&t, i);
                        break;
                    }
                    _ => {}
                }
                i += 1;
            }
            continue;
        }
        out.push(t[i].clone());
        i += 1;
    }
    out
}

/// One name a `use` brings in.
#[derive(Clone, Debug, PartialEq)]
struct UseLeaf {
    /// The path as written, `self` in a group already replaced by its prefix.
    path: Vec<String>,
    /// The name it is known by in the importing module (`None` for a glob).
    bound: Option<String>,
    line: usize,
}

/// Parses the use tree starting at `i` (just after `use`), prefixed by
/// `prefix`; returns the index after the tree.
fn parse_use_tree(t: &[Token], mut i: usize, prefix: &[String], out: &mut Vec<UseLeaf>) -> usize {
    let line = t.get(i).map_or(0, |x| x.line);
    let mut path = prefix.to_vec();
    if matches!(t.get(i).map(|x| &x.tok), Some(Tok::PathSep)) {
        // `use ::std::..`: a crate from outside.
        path.push(String::new());
        i += 1;
    }
    loop {
        match t.get(i).map(|x| &x.tok) {
            Some(Tok::Ident(w)) => {
                path.push(w.clone());
                i += 1;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                while i < t.len() && !is_punct(t.get(i), '}') {
                    i = parse_use_tree(t, i, &path, out);
                    if is_punct(t.get(i), ',') {
                        i += 1;
                    }
                }
                return i + 1;
            }
            Some(Tok::Punct('*')) => {
                out.push(UseLeaf {
                    path,
                    bound: None,
                    line,
                });
                return i + 1;
            }
            _ => break,
        }
        if matches!(t.get(i).map(|x| &x.tok), Some(Tok::PathSep)) {
            i += 1;
        } else {
            break;
        }
    }
    let mut bound = path.last().cloned();
    if path.last().map(String::as_str) == Some("self") {
        path.pop();
        bound = path.last().cloned();
    }
    if is_ident(t.get(i), "as") {
        bound = match t.get(i + 1).map(|x| &x.tok) {
            Some(Tok::Ident(a)) if a != "_" => Some(a.clone()),
            _ => None,
        };
        i += 2;
    }
    if !path.is_empty() {
        out.push(UseLeaf { path, bound, line });
    }
    i
}

/// A path named in code outside `use`: `crate::a::b`, `super::x`,
/// `self::y`, or one starting with a name (resolved later, if it is a child
/// module).
#[derive(Clone, Debug, PartialEq)]
struct InlinePath {
    path: Vec<String>,
    line: usize,
}

/// What one file says, read from its tokens.
#[derive(Debug, Default)]
struct Parsed {
    uses: Vec<UseLeaf>,
    inline: Vec<InlinePath>,
}

fn parse(src: &str) -> Parsed {
    let t = without_test_code(tokenize(src));
    let mut p = Parsed::default();
    let mut i = 0;
    while i < t.len() {
        if is_ident(t.get(i), "use") {
            i = parse_use_tree(&t, i + 1, &[], &mut p.uses);
            continue;
        }
        // The start of a path: a name followed by `::`, not itself after
        // `::` or `.` (a method's turbofish), nor the `in` of `pub(in ..)`.
        let starts = matches!(t.get(i + 1).map(|x| &x.tok), Some(Tok::PathSep))
            && !matches!(
                i.checked_sub(1).and_then(|j| t.get(j)).map(|x| &x.tok),
                Some(Tok::PathSep | Tok::Punct('.'))
            )
            && !is_ident(i.checked_sub(1).and_then(|j| t.get(j)), "in");
        if let (true, Some(Tok::Ident(_))) = (starts, t.get(i).map(|x| &x.tok)) {
            let line = t[i].line;
            let mut path = Vec::new();
            while let Some(Tok::Ident(w)) = t.get(i).map(|x| &x.tok) {
                path.push(w.clone());
                i += 1;
                if matches!(t.get(i).map(|x| &x.tok), Some(Tok::PathSep))
                    && matches!(t.get(i + 1).map(|x| &x.tok), Some(Tok::Ident(_)))
                {
                    i += 1;
                } else {
                    break;
                }
            }
            p.inline.push(InlinePath { path, line });
            continue;
        }
        i += 1;
    }
    p
}

/// The module path a file under `src/` defines (`[]` for lib.rs), or `None`
/// for what the library cannot import (binaries) and for test files.
fn module_of(rel: &str) -> Option<Vec<String>> {
    let rel = rel.strip_suffix(".rs")?;
    let parts: Vec<&str> = rel.split('/').collect();
    let last = *parts.last()?;
    if rel == "main" || parts[0] == "bin" || last == "tests" || last.ends_with("_tests") {
        return None;
    }
    let mut m: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
    if last == "mod" || rel == "lib" {
        m.pop();
    }
    Some(m)
}

struct Crate {
    /// Module path (joined by `::`) → file.
    files: BTreeMap<String, String>,
    /// File → its module path and what it says.
    parsed: BTreeMap<String, (Vec<String>, Parsed)>,
}

/// Where one edge was seen: the line and the path as written.
type Evidence = (usize, String);

impl Crate {
    /// `sources`: path under `src/` → text.
    fn new(sources: &BTreeMap<String, String>) -> Crate {
        let mut files = BTreeMap::new();
        let mut parsed = BTreeMap::new();
        for (rel, text) in sources {
            if let Some(m) = module_of(rel) {
                files.insert(m.join("::"), rel.clone());
                parsed.insert(rel.clone(), (m, parse(text)));
            }
        }
        Crate { files, parsed }
    }

    fn is_module(&self, m: &[String]) -> bool {
        self.files.contains_key(&m.join("::"))
    }

    /// `path` as written in module `module`, made absolute (without the
    /// leading `crate`); `None` for a path into another crate.
    fn absolute(&self, module: &[String], path: &[String]) -> Option<Vec<String>> {
        let first = path.first()?;
        match first.as_str() {
            "crate" => Some(path[1..].to_vec()),
            "self" => Some([module, &path[1..]].concat()),
            "super" => {
                let mut m = module.to_vec();
                let mut rest = path;
                while rest.first().map(String::as_str) == Some("super") {
                    m.pop()?;
                    rest = &rest[1..];
                }
                Some([m.as_slice(), rest].concat())
            }
            _ => {
                let child = [module, &path[..1]].concat();
                self.is_module(&child).then(|| [module, path].concat())
            }
        }
    }

    /// The file `path` (absolute) is named from: the longest prefix of it
    /// that is a module with a file of its own.
    fn resolve(&self, path: &[String]) -> Option<String> {
        let n = (0..=path.len())
            .rev()
            .find(|&n| self.is_module(&path[..n]))?;
        Some(self.files[&path[..n].join("::")].clone())
    }

    /// Every file-to-file edge, with where it was first seen.
    fn edges(&self) -> BTreeMap<String, BTreeMap<String, Evidence>> {
        let mut out: BTreeMap<String, BTreeMap<String, Evidence>> = BTreeMap::new();
        for (file, (module, p)) in &self.parsed {
            let named = p
                .uses
                .iter()
                .map(|u| (&u.path, u.line))
                .chain(p.inline.iter().map(|x| (&x.path, x.line)));
            let to = out.entry(file.clone()).or_default();
            for (path, line) in named {
                let Some(abs) = self.absolute(module, path) else {
                    continue;
                };
                let Some(target) = self.resolve(&abs) else {
                    continue;
                };
                if &target != file {
                    to.entry(target).or_insert((line, path.join("::")));
                }
            }
        }
        out
    }
}

/// Strongly connected components with more than one file (Tarjan).
fn circles(edges: &BTreeMap<String, BTreeMap<String, Evidence>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeMap<String, Evidence>>,
        index: HashMap<&'a str, usize>,
        low: HashMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: HashSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        let edges = s.edges;
        for w in edges.get(v).into_iter().flat_map(|m| m.keys()) {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        edges,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: HashSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// The shortest circle through `start` inside `members`, as files.
fn shortest_circle(
    edges: &BTreeMap<String, BTreeMap<String, Evidence>>,
    members: &BTreeSet<&str>,
    start: &str,
) -> Option<Vec<String>> {
    let mut came_from: HashMap<&str, &str> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for w in edges.get(v).into_iter().flat_map(|m| m.keys()) {
            let w = w.as_str();
            if !members.contains(w) {
                continue;
            }
            if w == start {
                let mut path = vec![v.to_string()];
                let mut at = v;
                while at != start {
                    at = came_from[at];
                    path.push(at.to_string());
                }
                path.reverse();
                return Some(path);
            }
            if w != start && !came_from.contains_key(w) {
                came_from.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    None
}

/// A readable account of every circle: its files, each circle through each
/// of them, and the line that makes each step.
fn report(edges: &BTreeMap<String, BTreeMap<String, Evidence>>) -> Option<String> {
    let comps = circles(edges);
    if comps.is_empty() {
        return None;
    }
    let mut text = String::new();
    for comp in &comps {
        let members: BTreeSet<&str> = comp.iter().map(String::as_str).collect();
        text.push_str(&format!("\ncircle among {} files:\n", comp.len()));
        let mut seen = BTreeSet::new();
        for start in &members {
            let Some(mut c) = shortest_circle(edges, &members, start) else {
                continue;
            };
            // One rotation per circle, so each is listed once.
            let min = c
                .iter()
                .enumerate()
                .min_by_key(|(_, f)| *f)
                .map_or(0, |(i, _)| i);
            c.rotate_left(min);
            if !seen.insert(c.clone()) {
                continue;
            }
            let steps: Vec<String> = c
                .iter()
                .zip(c.iter().cycle().skip(1))
                .map(|(a, b)| {
                    let (line, path) = &edges[a][b];
                    format!("    src/{a}:{line} {path} -> src/{b}")
                })
                .collect();
            let mut names: Vec<String> = c.iter().map(|f| format!("src/{f}")).collect();
            names.push(names[0].clone());
            text.push_str(&format!("  {}\n{}\n", names.join(" -> "), steps.join("\n")));
        }
    }
    Some(text)
}

fn read_sources(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            read_sources(&p, root, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.insert(rel, std::fs::read_to_string(&p).unwrap());
        }
    }
}

#[test]
fn src_has_no_import_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = BTreeMap::new();
    read_sources(&src, &src, &mut sources);
    let krate = Crate::new(&sources);
    assert!(
        krate.parsed.len() > 10,
        "read only {} files under {}",
        krate.parsed.len(),
        src.display()
    );
    if let Some(circles) = report(&krate.edges()) {
        panic!("modules in src/ import each other in a circle; each must stand above what it imports:{circles}");
    }
}

// The checker's own rules, on small made-up crates.

fn crate_of(files: &[(&str, &str)]) -> Crate {
    Crate::new(
        &files
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect(),
    )
}

fn edges_of(k: &Crate, file: &str) -> Vec<String> {
    k.edges()[file].keys().cloned().collect()
}

#[test]
fn grouped_uses_and_inline_paths_are_imports() {
    let k = crate_of(&[
        (
            "lib.rs",
            "pub mod a; pub mod b; pub mod c; pub mod d; pub mod e;",
        ),
        (
            "a.rs",
            "use crate::{b::{self, X as Y}, c::Z};\nfn f() { crate::d::go(); }",
        ),
        ("b.rs", "pub struct X;"),
        ("c.rs", "pub struct Z;"),
        ("d.rs", "pub fn go() {}"),
        ("e.rs", "pub(in crate::a) fn f() { x.collect::<Vec<_>>(); }"),
    ]);
    assert_eq!(edges_of(&k, "a.rs"), ["b.rs", "c.rs", "d.rs"]);
    assert!(
        edges_of(&k, "e.rs").is_empty(),
        "a visibility is not an import"
    );
}

#[test]
fn comments_strings_and_test_code_are_not_imports() {
    let k = crate_of(&[
        ("lib.rs", "pub mod a; pub mod b;"),
        (
            "a.rs",
            "// use crate::b;\n/* crate::b::x /* nested */ crate::b */\n\
             const S: &str = \"crate::b::X\"; const R: &str = r#\"crate::b \"quoted\"\"#;\n\
             const Q: char = '\"'; fn f<'a>(x: &'a str) -> char { 'b' }\n\
             #[cfg(test)]\nmod tests { use crate::b::X; }\n\
             #[cfg(test)]\nuse crate::b::Y;",
        ),
        ("b.rs", "pub struct X; pub struct Y;"),
    ]);
    assert!(
        edges_of(&k, "a.rs").is_empty(),
        "{:?}",
        edges_of(&k, "a.rs")
    );
}

#[test]
fn a_path_resolves_to_the_longest_module_prefix_with_a_file() {
    let k = crate_of(&[
        ("lib.rs", "pub mod limits; pub mod user;"),
        (
            "limits/mod.rs",
            "mod clock; pub mod redis_store; mod spec;\npub use clock::Clock;\npub use spec::*;",
        ),
        ("limits/clock.rs", "pub struct Clock;"),
        ("limits/spec.rs", "pub struct Spec;"),
        ("limits/redis_store/mod.rs", "pub struct RedisStore;"),
        (
            "user.rs",
            "use crate::limits::redis_store::RedisStore;\nuse crate::limits::{Clock, Spec};",
        ),
    ]);
    assert_eq!(
        edges_of(&k, "user.rs"),
        ["limits/mod.rs", "limits/redis_store/mod.rs"]
    );
    // Re-exports are imports of the child; `mod` lines are not.
    assert_eq!(
        edges_of(&k, "limits/mod.rs"),
        ["limits/clock.rs", "limits/spec.rs"]
    );
}

#[test]
fn a_child_and_its_parent_importing_each_other_are_a_circle() {
    let k = crate_of(&[
        ("lib.rs", "pub mod up;"),
        (
            "up/mod.rs",
            "mod pool;\npub use pool::Pool;\npub struct Spec;",
        ),
        ("up/pool.rs", "use super::Spec;\npub struct Pool;"),
    ]);
    let comps = circles(&k.edges());
    assert_eq!(
        comps,
        vec![vec!["up/mod.rs".to_string(), "up/pool.rs".to_string()]]
    );
    // Naming the sibling itself is no circle.
    let k = crate_of(&[
        ("lib.rs", "pub mod up;"),
        (
            "up/mod.rs",
            "mod pool; mod spec;\npub use pool::Pool;\npub use spec::Spec;",
        ),
        ("up/spec.rs", "pub struct Spec;"),
        ("up/pool.rs", "use super::spec::Spec;\npub struct Pool;"),
    ]);
    assert!(circles(&k.edges()).is_empty());
}
