#!/usr/bin/env python3
"""Checks that the core crate's top-level modules form a tree: no import loops.

Reads shared/src, finds every `crate::a::b` path (`use` lines, inline paths, and paths in
string literals such as `#[serde(default = "crate::a::f")]`), and every `super::`/`self::` path
resolved against the module it is written in. Each names a top-level module of shared/src; an
edge is drawn from the top-level module the path is written in to the one it names. Submodules
of one top-level module may import each other freely: the rule is about top-level modules.

Code under `#[cfg(test)]` is left out unless `--tests` is given: a test may reach across the
layers it checks, and nothing builds on it. Comments are left out (doc links build nothing).

Exits 1 and prints each loop, with the file and line of every import on it, when the
top-level modules form one; `--graph` prints the edges found.

Standard library only: `python3 scripts/check-core-modules.py [--tests] [--graph] [SRC]`.
"""

import argparse
import os
import re
import sys
from pathlib import Path

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A path inside a string literal (serde's `default = "..."`, `with = "..."`).
STRING_PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def module_of(path, src):
    """The module path of a source file: lib.rs is [], a/mod.rs and a.rs are [a]."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts in (["lib"], ["main"]):
        return []
    if parts[-1] == "mod":
        parts = parts[:-1]
    return parts


def tokens(text):
    """Rust tokens as (kind, value, line): 'id', 'str' (its contents), 'punct'. Comments are
    dropped; lifetimes and char literals are told apart well enough for paths."""
    out = []
    i, line, n = 0, 1, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            depth = 0
            while i < n:
                if text.startswith("/*", i):
                    depth += 1
                    i += 2
                elif text.startswith("*/", i):
                    depth -= 1
                    i += 2
                    if depth == 0:
                        break
                else:
                    line += text[i] == "\n"
                    i += 1
        elif re.match(r'b?r#*"', text[i:]):
            m = re.match(r'(b?r)(#*)"', text[i:])
            end = text.find('"' + m.group(2), i + len(m.group(0)))
            end = n if end < 0 else end
            body = text[i + len(m.group(0)) : end]
            out.append(("str", body, line))
            line += body.count("\n")
            i = end + 1 + len(m.group(2))
        elif c == '"' or text.startswith('b"', i):
            start = i + (2 if c == "b" else 1)
            j = start
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            body = text[start:j]
            out.append(("str", body, line))
            line += body.count("\n")
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a).
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:])
            i += len(m.group(0)) if m else 1
        elif c.isalpha() or c == "_":
            m = IDENT.match(text, i)
            out.append(("id", m.group(0), line))
            i = m.end()
        elif text.startswith("::", i):
            out.append(("punct", "::", line))
            i += 2
        else:
            out.append(("punct", c, line))
            i += 1
    return out


def skip_item(toks, k):
    """The index after the item starting at toks[k]: through its `;` or its balanced `{...}`."""
    depth = 0
    while k < len(toks):
        kind, value, _ = toks[k]
        if kind == "punct" and value in "([{":
            depth += 1
        elif kind == "punct" and value in ")]}":
            depth -= 1
            if depth == 0 and value == "}":
                return k + 1
        elif kind == "punct" and value == ";" and depth == 0:
            return k + 1
        k += 1
    return k


def is_cfg_test(toks, k):
    """Whether toks[k:] starts with `# [ cfg ( test ) ]`; returns the index after it or None."""
    want = ["#", "[", "cfg", "(", "test", ")", "]"]
    if [t[1] for t in toks[k : k + len(want)]] == want:
        return k + len(want)
    return None


def use_tree(toks, k, prefix, found, line):
    """Reads a path after `prefix` (`crate::a::{b, c::d}`), appending each full path."""
    path = list(prefix)
    while k < len(toks):
        kind, value, _ = toks[k]
        if kind == "punct" and value == "::":
            k += 1
            continue
        if kind == "id":
            path.append(value)
            k += 1
            if not (k < len(toks) and toks[k][1] == "::"):
                break
            continue
        if kind == "punct" and value == "{":
            k += 1
            while k < len(toks) and toks[k][1] != "}":
                if toks[k][1] == ",":
                    k += 1
                    continue
                if toks[k][1] == "*":
                    found.append((path, line))
                    k += 1
                    continue
                k = use_tree(toks, k, path, found, line)
            return k + 1
        break
    found.append((path, line))
    return k


def resolve(base, words, module):
    """The absolute module path `words` names, written in `module`; None if not a crate path."""
    if base == "crate":
        return words
    here = list(module)
    if base == "self":
        return here + words
    # `super`, possibly followed by more `super`s.
    here = here[:-1]
    while words and words[0] == "super":
        here = here[:-1]
        words = words[1:]
    return here + words


def imports(file, module, with_tests):
    """(target top-level module, line) for each crate path in one file, and the submodules
    declared `#[cfg(test)] mod x;` (left out with their files unless with_tests)."""
    toks = tokens(file.read_text(encoding="utf-8"))
    found = []
    test_files = []
    # Inline `mod x { ... }` nesting: each entry is (module path, brace depth it closes at).
    stack = [(list(module), -1)]
    depth = 0
    k = 0
    while k < len(toks):
        kind, value, line = toks[k]
        after = is_cfg_test(toks, k)
        if after is not None and not with_tests:
            # Skip other attributes, then the item itself.
            while after < len(toks) and toks[after][1] == "#":
                after = skip_item(toks, after + 1)
            if (
                after + 2 < len(toks)
                and toks[after][1] == "mod"
                and toks[after + 2][1] == ";"
            ):
                test_files.append(stack[-1][0] + [toks[after + 1][1]])
            k = skip_item(toks, after)
            continue
        if kind == "id" and value == "mod" and k + 2 < len(toks) and toks[k + 2][1] == "{":
            stack.append((stack[-1][0] + [toks[k + 1][1]], depth))
            depth += 1
            k += 3
            continue
        if kind == "punct" and value == "{":
            depth += 1
        elif kind == "punct" and value == "}":
            depth -= 1
            if stack[-1][1] == depth:
                stack.pop()
        elif kind == "str":
            for m in STRING_PATH.finditer(value):
                words = m.group(2).split("::")[1:]
                found.append(((m.group(1), words, stack[-1][0]), line))
        elif kind == "id" and value in ("crate", "super", "self"):
            prev = toks[k - 1][1] if k else ""
            if prev != "::" and k + 1 < len(toks) and toks[k + 1][1] == "::":
                paths = []
                k = use_tree(toks, k + 1, [], paths, line)
                for words, at in paths:
                    found.append(((value, words, stack[-1][0]), at))
                continue
        k += 1
    targets = []
    for (base, words, where), line in found:
        absolute = resolve(base, words, where)
        if absolute:
            targets.append((absolute[0], line))
    return targets, test_files


def find_loop(edges):
    """One loop through the graph as a list of modules (first repeated last), or None."""
    colour = {}

    def visit(node, trail):
        colour[node] = "grey"
        trail.append(node)
        for nxt in sorted(edges.get(node, {})):
            if colour.get(nxt) == "grey":
                return trail[trail.index(nxt) :] + [nxt]
            if nxt not in colour:
                found = visit(nxt, trail)
                if found:
                    return found
        trail.pop()
        colour[node] = "black"
        return None

    for node in sorted(edges):
        if node not in colour:
            found = visit(node, [])
            if found:
                return found
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", nargs="?", default=str(Path(__file__).resolve().parent.parent / "shared/src"))
    parser.add_argument("--tests", action="store_true", help="count code under #[cfg(test)] too")
    parser.add_argument("--graph", action="store_true", help="print every edge found")
    args = parser.parse_args()
    src = Path(args.src)
    files = sorted(src.rglob("*.rs"))
    if not files:
        print(f"no Rust files under {src}", file=sys.stderr)
        return 2
    top = {module_of(f, src)[0] for f in files if module_of(f, src)}

    # Files of `#[cfg(test)] mod x;` submodules are read only with --tests.
    parsed = {}
    skipped = []
    for f in files:
        parsed[f] = imports(f, module_of(f, src), args.tests)
        skipped += parsed[f][1]

    edges = {}
    for f in files:
        module = module_of(f, src)
        if not module or any(module[: len(s)] == s for s in skipped):
            continue
        for target, line in parsed[f][0]:
            if target in top and target != module[0]:
                where = f"{os.path.relpath(f)}:{line}"
                seen = edges.setdefault(module[0], {}).setdefault(target, [])
                if where not in seen:
                    seen.append(where)

    if args.graph:
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print(f"{a} -> {b}  ({edges[a][b][0]})")

    loop = find_loop(edges)
    if loop is None:
        scope = "with tests" if args.tests else "without #[cfg(test)] code"
        print(f"core modules form a tree: {len(top)} top-level modules, no import loop ({scope})")
        return 0
    print("import loop between the core's top-level modules: " + " -> ".join(loop), file=sys.stderr)
    for a, b in zip(loop, loop[1:]):
        print(f"  {a} -> {b}:", file=sys.stderr)
        for where in edges[a][b]:
            print(f"    {where}", file=sys.stderr)
    print(
        "Move the type or function the lower module needs down (or the code that needs both up),"
        " so that imports point one way.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
