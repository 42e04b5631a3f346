#!/usr/bin/env python3
"""Checks the layering of a built furrow (tests/layers.txt) from its object files.

For every object file of the libraries and programs (not the tests), nm tells the
symbols it defines and those it uses. A file depends on the file that defines a
symbol it uses. The check fails on
  - a folder that tests/layers.txt does not declare,
  - a dependency on a folder of a later line of layers.txt, or on another folder
    of the same line (upward or sideways),
  - files that depend on each other in a loop (a strongly connected component of
    more than one file), within a folder or across folders.
Usage: layers.py LAYERS_TXT BUILD_DIR"""
import collections
import os
import re
import subprocess
import sys


def read_layers(path):
    rank = {}
    for n, line in enumerate(open(path)):
        line = line.split('#', 1)[0].split()
        for folder in line:
            rank[folder] = n
    return rank


def source_of(build, obj):
    rel = os.path.relpath(obj, build)
    folder, base = os.path.split(rel)
    # Objects of targets with their own flags are named TARGET-SOURCE.o.
    base = re.sub(r'^(lib[A-Za-z0-9_]+_a|furrow|furrow_cuda)-', '', base)
    return folder, os.path.join(folder, base[:-2])


def symbols(obj):
    out = subprocess.run(['nm', '-g', obj], capture_output=True, text=True, check=True).stdout
    defined, used = set(), set()
    for line in out.splitlines():
        p = line.split()
        if len(p) == 2 and p[0] == 'U':
            used.add(p[1])
        elif len(p) == 3 and p[1] not in 'Uw':
            defined.add(p[2])
    return defined, used


def components(nodes, edges):
    """Tarjan's strongly connected components."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
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

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def main():
    rank = read_layers(sys.argv[1])
    build = sys.argv[2]
    objs = []
    for root, dirs, files in os.walk(build):
        rel = os.path.relpath(root, build)
        dirs[:] = [d for d in dirs if not d.startswith('.') and not (rel == '.' and d in ('tests', 'fuzz', 'build-aux', 'm4', 'jobs'))]
        objs += [os.path.join(root, f) for f in files if f.endswith('.o')]
    if not objs:
        print('layers: no object files under %s (build first)' % build)
        return 1
    folder_of, defs, uses = {}, {}, {}
    problems = []
    for obj in objs:
        folder, src = source_of(build, obj)
        folder_of[src] = folder
        d, u = symbols(obj)
        uses[src] = u
        for s in d:
            defs.setdefault(s, src)
        if folder not in rank:
            problems.append('%s: folder %s is not declared in layers.txt' % (src, folder))
    edges = collections.defaultdict(set)
    why = {}
    for src, used in uses.items():
        for s in used:
            dst = defs.get(s)
            if dst and dst != src:
                edges[src].add(dst)
                why.setdefault((src, dst), s)
    for src in sorted(edges):
        a = folder_of[src]
        for dst in sorted(edges[src]):
            b = folder_of[dst]
            if a == b or a not in rank or b not in rank:
                continue
            if rank[b] > rank[a]:
                problems.append('upward: %s uses %s of %s (%s)' % (src, why[(src, dst)], dst, b))
            elif rank[b] == rank[a]:
                problems.append('sideways: %s uses %s of %s (%s, same layer)' % (src, why[(src, dst)], dst, b))
    for comp in components(list(uses), edges):
        if len(comp) > 1:
            problems.append('loop: ' + ' <-> '.join(comp))
    n_edges = sum(len(v) for v in edges.values())
    print('layers: %d object files, %d file dependencies, %d folders' % (len(objs), n_edges, len(set(folder_of.values()))))
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
