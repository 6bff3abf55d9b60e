#!/usr/bin/env python3
"""The house rules a newcomer relies on, checked: no source file outside tests over 800 lines,
no function over 120 lines, and no import circle between the modules of one crate (a module
never imports, directly or through others, one that imports it back). A module naming its own
parent is not counted: a child module is part of its parent.

Usage: python3 scripts/check-structure.py [--max-file 800] [--max-fn 120]
Exits 1 and lists what breaks a rule. Reads crates/*/src only; test code (files under tests/,
files named tests.rs, and `#[cfg(test)] mod tests { ... }` blocks) is not held to the sizes.
"""
import argparse
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+\"[^\"]*\"\s+)?fn\s+(\w+)")
CRATE_PATH = re.compile(r"\bcrate::((?:\w+::)*\w+)")
SUPER_PATH = re.compile(r"\b((?:super::)+)((?:\w+::)*\w+)")


def strip(line, state):
    """The line without string literals and comments (state carries block comments and strings
    across lines)."""
    out = []
    i = 0
    while i < len(line):
        if state["block"]:
            end = line.find("*/", i)
            if end < 0:
                return "".join(out)
            state["block"] = False
            i = end + 2
            continue
        if state["string"]:
            if line[i] == "\\":
                i += 2
                continue
            if line[i] == '"':
                state["string"] = False
            i += 1
            continue
        if line.startswith("//", i):
            break
        if line.startswith("/*", i):
            state["block"] = True
            i += 2
            continue
        if line[i] == '"' and not re.match(r"r#*\"", line[max(0, i - 1):i + 1]):
            state["string"] = True
            i += 1
            continue
        m = re.match(r"r(#+)\"", line[i:])
        if m:
            close = '"' + m.group(1)
            end = line.find(close, i + len(m.group(0)))
            i = len(line) if end < 0 else end + len(close)
            continue
        if line[i] == "'" and re.match(r"'(\\.|[^\\'])'", line[i:]):
            i += len(re.match(r"'(\\.|[^\\'])'", line[i:]).group(0))
            continue
        out.append(line[i])
        i += 1
    return "".join(out)


def code_lines(path):
    state = {"block": False, "string": False}
    return [strip(line, state) for line in path.read_text().splitlines()]


def test_block_lines(lines):
    """Indexes of lines inside `#[cfg(test)]` items."""
    inside = set()
    i = 0
    while i < len(lines):
        if lines[i].strip().startswith("#[cfg(test)]"):
            j, _ = item_end(lines, i + 1)
            inside.update(range(i, j + 1))
            i = j
        i += 1
    return inside


def item_end(lines, start):
    """The line where the item starting at `start` ends (its braces balance, or a `;` ends it
    before any brace), and whether it has a body."""
    depth, started, j = 0, False, start
    while j < len(lines):
        depth += lines[j].count("{") - lines[j].count("}")
        started = started or "{" in lines[j]
        if started and depth <= 0:
            break
        if not started and lines[j].rstrip().endswith(";"):
            break
        j += 1
    return j, started


def long_functions(lines, skip, limit):
    for i, line in enumerate(lines):
        m = FN.match(line)
        if not m or i in skip:
            continue
        j, started = item_end(lines, i)
        if started and j - i + 1 > limit:
            yield m.group(7), i + 1, j - i + 1


def module_of(crate_src, path):
    rel = path.relative_to(crate_src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def resolve(modules, parts, reexports=None):
    """The module a path names: the longest known module in it (crate::a::b::Item → a::b), and
    when that module only re-exports the item (`pub use x::Item`), the module it comes from."""
    parts = tuple(parts)
    full = parts
    while parts and parts not in modules:
        parts = parts[:-1]
    seen = set()
    while reexports and len(full) > len(parts) and (parts, full[len(parts)]) in reexports:
        key = (parts, full[len(parts)])
        if key in seen:
            break
        seen.add(key)
        parts = reexports[key]
    return parts


def reexports_of(modules, module, lines):
    """(module, name) → the module a `pub use` there takes the name from."""
    found = {}
    text = " ".join(lines)
    for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", text):
        path = m.group(1).replace(" ", "")
        if "{" in path:
            head, _, rest = path.partition("{")
            names = [n.split("::")[-1] for n in rest.rstrip("}").split(",") if n]
            heads = [head + n.rsplit("::", 1)[0] + "::" if "::" in n else head for n in rest.rstrip("}").split(",") if n]
        else:
            names = [path.split("::")[-1]]
            heads = [path.rsplit("::", 1)[0] + "::"] if "::" in path else [""]
        for name, head in zip(names, heads):
            segs = [s for s in head.split("::") if s]
            if segs[:1] == ["crate"]:
                target = tuple(segs[1:])
            elif segs[:1] == ["self"]:
                target = module + tuple(segs[1:])
            elif segs and segs[0] == "super":
                up = 0
                while segs and segs[0] == "super":
                    segs, up = segs[1:], up + 1
                target = module[: len(module) - up] + tuple(segs)
            else:
                target = module + tuple(segs)
            if target in modules or resolve(modules, target) != ():
                found[(module, name)] = resolve(modules, target)
    return found


def imports(modules, module, lines, skip, reexports):
    deps = set()
    children = {m[-1]: m for m in modules if len(m) == len(module) + 1 and m[:-1] == module}
    for i, line in enumerate(lines):
        if i in skip:
            continue
        for m in CRATE_PATH.finditer(line):
            deps.add(resolve(modules, m.group(1).split("::"), reexports))
        for m in SUPER_PATH.finditer(line):
            up = m.group(1).count("super::")
            base = module[: len(module) - up]
            deps.add(resolve(modules, base + tuple(m.group(2).split("::")), reexports))
        for name, child in children.items():
            if re.search(rf"(?<![\w:]){name}::|\bself::{name}\b", line):
                deps.add(child)
    # A module's use of its own ancestors is not a circle: a child module is part of its parent
    # (it sees the parent's private items, and `impl` blocks of the parent's types live in it).
    return {d for d in deps if d != module[: len(d)]}


def cycles(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(group)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-file", type=int, default=800)
    parser.add_argument("--max-fn", type=int, default=120)
    args = parser.parse_args()
    problems = []
    for crate_src in sorted(ROOT.glob("crates/*/src")):
        files = sorted(crate_src.rglob("*.rs"))
        parsed = {}
        for path in files:
            lines = code_lines(path)
            is_test = path.name == "tests.rs" or "tests" in path.relative_to(crate_src).parts
            skip = set(range(len(lines))) if is_test else test_block_lines(lines)
            parsed[path] = (lines, skip)
            name = path.relative_to(ROOT)
            counted = len(path.read_text().splitlines()) - len(skip)
            if not is_test and counted > args.max_file:
                problems.append(f"{name}: {counted} lines outside tests (limit {args.max_file})")
            for fn, line, length in long_functions(lines, skip, args.max_fn):
                problems.append(f"{name}:{line}: fn {fn} is {length} lines (limit {args.max_fn})")
        modules = {module_of(crate_src, p) for p in files}
        reexports = {}
        for path, (lines, skip) in parsed.items():
            reexports.update(reexports_of(modules, module_of(crate_src, path), lines))
        graph = {}
        for path, (lines, skip) in parsed.items():
            module = module_of(crate_src, path)
            deps = imports(modules, module, lines, skip, reexports)
            graph.setdefault(module, set()).update(deps)
        for group in cycles(graph):
            names = ", ".join(sorted("::".join(m) or "(root)" for m in group))
            problems.append(f"{crate_src.parent.name}: import circle between {names}")
    for problem in problems:
        print(problem)
    if problems:
        sys.exit(1)
    print("structure: every file and function within its limit, no import circle")


if __name__ == "__main__":
    main()
