#!/usr/bin/env python3
"""Reports import cycles between the modules of Rust crates.

Usage: scripts/module-cycles.py [--no-tests] [--edges] CRATE_DIR...

For each crate (src/lib.rs and src/main.rs, each its own module tree) it reads every
`use crate::…` / `use super::…` / `use self::…` declaration and every `crate::x::…`,
`super::x::…` path in code (comments, strings and doc links are not code), resolves them
through the module tree and through `use` re-exports to the module that defines the item,
and builds one graph per parent module whose nodes are that parent's child modules (the
crate root's children are the top-level modules). A use from `a/x.rs` of an item of
`a/y.rs` is an edge x -> y under `a`; a use from `a/x.rs` of `b/z.rs` is an edge a -> b
under the root. A parent using its children (re-exports included) and a child using its
parent's own items are not sibling edges, so a parent re-exporting its children is no cycle.

Every strongly connected component of two or more siblings is reported with the edges that
close it (file:line and the path written there); edges that only test code makes (inside a
`#[cfg(test)]` module) are marked `[test]`, and `--no-tests` leaves them out. `--edges`
also prints every sibling edge. Exit status: 0 when no crate has a cycle, 1 when one has,
2 on a usage error.

Limits (a regex reader, not rustc): macro-generated paths (`$crate::`), `#[path]` on inline
modules and paths reached only through a glob import of a glob import are not followed.
"""

import argparse
import os
import re
import sys
from collections import defaultdict

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
SHOWN = 8  # sites printed per edge of a cycle


def strip(src):
    """Blanks comments, string and char literals (newlines kept, same length), so that
    offsets and line numbers still match the source."""
    out = list(src)
    n = len(src)
    i = 0

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c in "rb" and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            m = re.compile(r'b?r(#*)"').match(src, i)
            if m:
                end = src.find('"' + m.group(1), m.end())
                end = n if end < 0 else end + 1 + len(m.group(1))
                blank(i, end)
                i = end
            elif src.startswith('b"', i) or src.startswith("b'", i):
                i += 1  # the literal itself is handled on the next character
            else:
                i += 1
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            blank(i, min(j + 1, n))
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}', '\''), else a lifetime or label.
            m = re.compile(r"'(\\u\{[0-9a-fA-F]*\}|\\x[0-9a-fA-F]{2}|\\.|[^\\'\n])'").match(src, i)
            if m:
                blank(i, m.end())
                i = m.end()
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


def match_brace(text, open_at):
    """Offset just past the `}` closing the `{` at `open_at`."""
    depth = 0
    for j in range(open_at, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j + 1
    return len(text)


def parse_use_tree(text):
    """`a::b::{c, d::{self, e as f}, g::*}` -> [(segments, alias or None, is_glob)]."""
    toks = re.findall(IDENT + r"|::|[{},*]", text)
    pos = 0

    def tree(prefix, in_braces):
        nonlocal pos
        segs = list(prefix)
        while pos < len(toks):
            t = toks[pos]
            if t == "::":
                pos += 1
            elif t == "{":
                pos += 1
                items = []
                while pos < len(toks) and toks[pos] != "}":
                    if toks[pos] == ",":
                        pos += 1
                        continue
                    items += tree(segs, True)
                pos += 1
                return items
            elif t == "*":
                pos += 1
                return [(segs, None, True)]
            elif t in (",", "}"):
                break
            elif t == "as":
                pos += 1
                alias = toks[pos] if pos < len(toks) else None
                pos += 1
                return [(segs, alias, False)]
            elif t == "self" and in_braces and len(segs) == len(prefix):
                pos += 1  # `{self, …}`: the prefix itself
            else:
                segs.append(t)
                pos += 1
        return [(segs, None, False)]

    return tree([], False)


class Module:
    def __init__(self, path, file, start, end, test):
        self.path = tuple(path)  # segments from the crate root
        self.file = file
        self.start, self.end = start, end  # span in the file (inline modules)
        self.test = test  # inside #[cfg(test)]
        self.children = {}
        self.aliases = {}  # local name -> absolute segments
        self.globs = []  # absolute segments of glob-imported paths
        self.refs = []  # (segments relative to this module's scope, line, text)


class Crate:
    def __init__(self, src_dir, root_file):
        self.src_dir = src_dir
        self.modules = {}
        self.texts = {}
        self.load(root_file, (), os.path.dirname(root_file), True, False)

    def load(self, file, path, child_dir, is_dir_owner, test):
        """Reads the module file `file` (module `path`) and the modules it declares."""
        try:
            with open(file, encoding="utf-8") as f:
                raw = f.read()
        except OSError as e:
            print(f"warning: {file}: {e}", file=sys.stderr)
            return
        text = strip(raw)
        self.texts[file] = (raw, text)
        self.scan(file, raw, text, 0, len(text), path, child_dir, test)

    def scan(self, file, raw, text, start, end, path, child_dir, test):
        mod = Module(path, file, start, end, test)
        self.modules[mod.path] = mod
        # Child modules: `[attrs] [pub(..)] mod name;` or `… mod name { … }`.
        decl = re.compile(
            r"((?:#\[[^\]]*\]\s*)*)(?:pub(?:\s*\([^)]*\))?\s+)?\bmod\s+(" + IDENT + r")\s*([;{])"
        )
        inner = []
        i = start
        while True:
            m = decl.search(text, i, end)
            if not m:
                break
            attrs, name, kind = m.group(1), m.group(2), m.group(3)
            ctest = test or bool(re.search(r"cfg\s*\(\s*test\s*\)", attrs))
            cpath = path + (name,)
            if kind == ";":
                pm = re.search(r'#\[\s*path\s*=\s*"([^"]*)"', raw[m.start(1) : m.end(1)])
                if pm:
                    cfile = os.path.join(child_dir, pm.group(1))
                else:
                    a = os.path.join(child_dir, name + ".rs")
                    cfile = a if os.path.exists(a) else os.path.join(child_dir, name, "mod.rs")
                owner = os.path.basename(cfile) == "mod.rs"
                cdir = os.path.dirname(cfile) if owner else os.path.join(child_dir, name)
                mod.children[name] = cpath
                self.load(cfile, cpath, cdir, owner, ctest)
                i = m.end()
            else:
                close = match_brace(text, m.end() - 1)
                mod.children[name] = cpath
                inner.append((m.end(), close))
                self.scan(file, raw, text, m.end(), close - 1, cpath, os.path.join(child_dir, name), ctest)
                i = close
        # This module's own text: its span minus inline child modules.
        own = []
        cur = start
        for a, b in inner:
            own.append((cur, a))
            cur = b
        own.append((cur, end))
        self.read_refs(mod, text, own)

    def read_refs(self, mod, text, spans):
        line_of = lambda off: text.count("\n", 0, off) + 1
        for a, b in spans:
            chunk = text[a:b]
            # Visibility paths (`pub(in crate::x)`) are not uses.
            chunk = re.sub(r"pub\s*\(\s*in\s+[^)]*\)", lambda m: " " * len(m.group(0)), chunk)
            # `use` declarations, then blanked so the path scan does not see them twice.
            blanked = list(chunk)
            for m in re.finditer(r"(?<![\w$])use\s+([^;]*);", chunk):
                body = m.group(1).strip()
                line = line_of(a + m.start())
                if body.startswith("::"):
                    continue
                for segs, alias, glob in parse_use_tree(body):
                    if not segs:
                        continue
                    absolute = self.absolute(mod, segs)
                    if absolute is None:
                        continue
                    mod.refs.append((absolute, line, "use " + "::".join(segs) + ("::*" if glob else "")))
                    if glob:
                        mod.globs.append(absolute)
                    else:
                        local = alias or segs[-1]
                        if local != "_":
                            mod.aliases[local] = absolute
                for k in range(m.start(), m.end()):
                    if blanked[k] != "\n":
                        blanked[k] = " "
            chunk = "".join(blanked)
            # Paths in code: `crate::a::b`, `super::x`, `self::x`, or `name::x` where `name`
            # is a child module or a `use` alias of this module.
            for m in re.finditer(r"(?<![\w:$])(" + IDENT + r")((?:\s*::\s*" + IDENT + r")+)", chunk):
                head = m.group(1)
                segs = [head] + re.findall(IDENT, m.group(2))
                if head in mod.aliases and head not in mod.children:
                    # `Value::Str` after `use crate::event::Value` adds nothing to the use;
                    # `buffer::Node` after `use super::buffer` may reach a deeper module.
                    target = list(mod.aliases[head])
                    if tuple(target) not in self.modules or self.resolve(target) != tuple(target):
                        continue
                elif head not in ("crate", "super", "self") and head not in mod.children:
                    continue
                absolute = self.absolute(mod, segs)
                if absolute is not None:
                    mod.refs.append((absolute, line_of(a + m.start()), "::".join(segs)))

    def absolute(self, mod, segs):
        """Segments from the crate root for a path written in `mod`, or None (external)."""
        segs = list(segs)
        if segs[0] == "crate":
            return segs[1:]
        if segs[0] in ("super", "self"):
            base = list(mod.path)
            while segs and segs[0] in ("super", "self"):
                if segs.pop(0) == "super":
                    base = base[:-1]
            return base + segs
        if segs[0] in mod.children:
            return list(mod.path) + segs
        if segs[0] in mod.aliases:
            return list(mod.aliases[segs[0]]) + segs[1:]
        return None  # an external crate (or a name this reader cannot place)

    def resolve(self, segs, depth=0):
        """The module that defines the item at absolute path `segs`."""
        cur = ()
        for i, s in enumerate(segs):
            m = self.modules.get(cur)
            if m is None:
                return cur
            if s in m.children:
                cur = m.children[s]
                continue
            if depth < 16 and s in m.aliases and list(m.aliases[s]) != list(cur) + [s]:
                return self.resolve(list(m.aliases[s]) + list(segs[i + 1 :]), depth + 1)
            if depth < 16:
                for g in m.globs:
                    gm = self.modules.get(self.resolve(g, depth + 1))
                    if gm is not None and gm.path != cur and (s in gm.children or s in gm.aliases):
                        return self.resolve(list(gm.path) + list(segs[i:]), depth + 1)
            return cur
        return cur


def sibling_edges(crate, with_tests):
    """{parent: {(a, b): [(file, line, text, test)]}}: a uses b, both children of parent."""
    edges = defaultdict(lambda: defaultdict(list))
    for mod in crate.modules.values():
        if mod.test and not with_tests:
            continue
        for segs, line, text in mod.refs:
            target = crate.resolve(segs)
            src = mod.path
            k = 0
            while k < len(src) and k < len(target) and src[k] == target[k]:
                k += 1
            if k < len(src) and k < len(target):
                parent = src[:k]
                rel = os.path.relpath(mod.file, os.path.dirname(crate.src_dir))
                edges[parent][(src[k], target[k])].append((rel, line, text, mod.test))
    return edges


def sccs(nodes, adj):
    """Tarjan's strongly connected components."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(adj.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def check(crate_dir, with_tests, show_edges):
    src = os.path.join(crate_dir, "src")
    roots = [f for f in ("lib.rs", "main.rs") if os.path.exists(os.path.join(src, f))]
    if not roots:
        print(f"{crate_dir}: no src/lib.rs or src/main.rs", file=sys.stderr)
        return None
    cycles = 0
    for root in roots:
        crate = Crate(src, os.path.join(src, root))
        label = f"{crate_dir} ({root})"
        edges = sibling_edges(crate, with_tests)
        top = sorted(crate.modules[()].children)
        print(f"{label}: {len(crate.modules)} modules; top-level: {', '.join(top) or '-'}")
        for parent in sorted(edges):
            pname = "::".join(("crate",) + parent)
            adj = defaultdict(set)
            for a, b in edges[parent]:
                adj[a].add(b)
            if show_edges:
                for (a, b), sites in sorted(edges[parent].items()):
                    tag = " [test]" if all(s[3] for s in sites) else ""
                    f, line, text, _ = sites[0]
                    more = f" (+{len(sites) - 1})" if len(sites) > 1 else ""
                    print(f"  edge under {pname}: {a} -> {b}{tag}  {f}:{line} {text}{more}")
            for comp in sccs(adj.keys() | {b for s in adj.values() for b in s}, adj):
                if len(comp) < 2:
                    continue
                cycles += 1
                print(f"  CYCLE under {pname}: {{{', '.join(comp)}}}")
                for (a, b), sites in sorted(edges[parent].items()):
                    if a in comp and b in comp:
                        tag = " [test]" if all(s[3] for s in sites) else ""
                        print(f"    {a} -> {b}{tag}")
                        for f, line, text, t in sites[:SHOWN]:
                            print(f"      {f}:{line}: {text}{' [test]' if t else ''}")
                        if len(sites) > SHOWN:
                            print(f"      … and {len(sites) - SHOWN} more")
    if cycles == 0:
        print(f"{crate_dir}: no cycle")
    return cycles


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("crates", nargs="+", help="crate directories (holding src/)")
    ap.add_argument("--no-tests", action="store_true", help="ignore #[cfg(test)] modules")
    ap.add_argument("--edges", action="store_true", help="print every sibling edge")
    args = ap.parse_args()
    total, bad = 0, False
    for c in args.crates:
        n = check(c, not args.no_tests, args.edges)
        if n is None:
            bad = True
        else:
            total += n
    if bad:
        return 2
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
