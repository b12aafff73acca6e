"""A layered layout computed in Python: inputs on the left, the output on the right.

The classic recipe for drawing a DAG (Sugiyama's): give every box a rank (the longest path from
the inputs; an input sits just before its first use), cut every wire into one segment per rank it
crosses, with its label as a box of its own on its last segment (so a label always sits on its
own wire, next to the gate it feeds), order each column by the barycenter of its neighbours
(members of one module kept together), then place each column's boxes as close to their
neighbours as the spacing allows (an exact least-squares fit, by pool-adjacent-violators).
A drawing wider than ``max_width`` is wrapped into rows, preferably where one top-level module
ends and the next begins, so an MLP reads layer by layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Item", "Edge", "Placed", "Route", "Layout", "compute", "text_width"]

GAP_X = 14          # between a column of boxes and a column of labels
GAP_Y = 12          # between boxes of one column
CLUSTER_GAP = 16    # room above a row for cluster labels
CLUSTER_TOP = 18    # a cluster's border above its members, per nesting level (its label)
CLUSTER_PAD = 7     # a cluster's border beside and below its members, per nesting level
BAND_GAP = 44       # between wrapped rows
MARGIN = 12

# average advance widths of DejaVu Sans (matplotlib's font; close to Verdana/Helvetica), in em
_WIDE, _NARROW = set("mwMW@%"), set(".,:;'|!ilj ")
_DIGITS = set("0123456789+-−=<>×÷")


def text_width(text: str, size: float) -> float:
    """An estimate of the rendered width of ``text`` at font ``size`` (pixels)."""
    w = 0.0
    for c in text:
        if c in _NARROW:
            w += 0.30
        elif c in "()[]{}":
            w += 0.39
        elif c in _DIGITS:
            w += 0.64
        elif c in _WIDE:
            w += 0.95
        elif c.isupper():
            w += 0.70
        elif c.isascii():
            w += 0.58
        else:
            w += 0.75
    return w * size


@dataclass
class Item:
    """A box to place: its size and shape (``circle``, ``rect``, ``text-right`` for an input's
    name, ``text-left`` for an output's) and its cluster path."""

    id: str
    w: float
    h: float
    shape: str = "rect"
    scope: tuple = ()


@dataclass
class Edge:
    id: str
    src: str
    dst: str
    label: tuple | None = None  # (width, height) of its label, or None


@dataclass
class Placed:
    x: float  # center
    y: float
    w: float
    h: float
    shape: str = "rect"


@dataclass
class Route:
    """A wire's path: ``points`` joined by smooth curves, except the segments listed in
    ``straight`` (through a label, and the runs that wrap to the next row)."""

    points: list
    straight: set = field(default_factory=set)
    label: Placed | None = None


@dataclass
class Layout:
    width: float
    height: float
    boxes: dict               # id -> Placed
    routes: dict              # edge id -> Route
    clusters: list            # (key, outline points, depth), outermost first
    rows: int = 1


def compute(items: list, edges: list, *, max_width: float | None = None,
            top: float = 0.0) -> Layout:
    """Place ``items`` (boxes) and route ``edges`` between them; ``top`` leaves room above."""
    by_id = {it.id: it for it in items}
    edges = [e for e in edges if e.src in by_id and e.dst in by_id and e.src != e.dst]
    rank = _ranks(items, edges)
    layers, chains, kind = _layers(items, edges, rank)
    size = {it.id: (it.w, it.h) for it in items}
    scope = {it.id: it.scope for it in items}
    for e in edges:
        common = _common(by_id[e.src].scope, by_id[e.dst].scope)
        for k, d in enumerate(chains[e.id]):
            is_label = e.label is not None and k == len(chains[e.id]) - 1
            size[d] = e.label if is_label else (0.0, 2.0)
            kind[d] = "label" if is_label else "dummy"
            scope[d] = common
    up, down = _neighbours(edges, chains)
    _order(layers, up, down, scope)
    xs = _columns(layers, size)
    ys = _rows(layers, up, down, size, scope, kind)
    placed = {n: Placed(xs[k], ys[n], *size[n], by_id[n].shape if n in by_id else "point")
              for k, layer in enumerate(layers) for n in layer}
    bands = _bands(layers, size, xs, scope, max_width)
    width, height = _wrap(layers, placed, bands, top)
    where = {n: _band_of(k, bands) for k, layer in enumerate(layers) for n in layer}
    routes = {e.id: _route(e, chains[e.id], placed, kind, where) for e in edges}
    boxes = {it.id: placed[it.id] for it in items}
    clusters = _clusters(items, placed, where, layers, scope)
    for _, pts, _ in clusters:
        width = max(width, max(x for x, _ in pts) + MARGIN)
        height = max(height, max(y for _, y in pts) + MARGIN)
    return Layout(width, height, boxes, routes, clusters, len(bands))


def _common(a: tuple, b: tuple) -> tuple:
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    return a[:k]


# ---- ranks and layers ---------------------------------------------------------------------------
def _ranks(items: list, edges: list) -> dict:
    """Longest path from the inputs; an input with no inputs of its own sits just before its
    first consumer."""
    preds: dict = {it.id: [] for it in items}
    succs: dict = {it.id: [] for it in items}
    for e in edges:
        preds[e.dst].append(e.src)
        succs[e.src].append(e.dst)
    indeg = {n: len(ps) for n, ps in preds.items()}
    todo = [it.id for it in items if indeg[it.id] == 0]
    order = []
    while todo:
        n = todo.pop()
        order.append(n)
        for s in succs[n]:
            indeg[s] -= 1
            if indeg[s] == 0:
                todo.append(s)
    rank = {}
    for n in order:
        rank[n] = max((rank[p] + 1 for p in preds[n]), default=0)
    for n in reversed(order):
        if not preds[n] and succs[n]:
            rank[n] = min(rank[s] for s in succs[n]) - 1
    for it in items:  # a cycle cannot come from a graph, but never lose a box
        rank.setdefault(it.id, 0)
    low = min(rank.values(), default=0)
    return {n: r - low for n, r in rank.items()}


def _layers(items: list, edges: list, rank: dict):
    """Boxes on even layers (2 × rank); each edge gets one point per odd layer it crosses,
    its label at the last one."""
    n_layers = 2 * max(rank.values(), default=0) + 1
    layers: list = [[] for _ in range(n_layers)]
    kind: dict = {}
    for it in items:
        layers[2 * rank[it.id]].append(it.id)
        kind[it.id] = "box"
    chains: dict = {}
    for e in edges:
        lo, hi = 2 * rank[e.src], 2 * rank[e.dst]
        chain = []
        for k in range(lo + 1, hi):
            d = f"{e.id}@{k}"
            layers[k].append(d)
            chain.append(d)
        chains[e.id] = chain
    return layers, chains, kind


def _neighbours(edges: list, chains: dict):
    up: dict = {}
    down: dict = {}
    for e in edges:
        path = [e.src] + chains[e.id] + [e.dst]
        for a, b in zip(path, path[1:]):
            down.setdefault(a, []).append(b)
            up.setdefault(b, []).append(a)
    return up, down


# ---- order within each column -------------------------------------------------------------------
def _order(layers: list, up: dict, down: dict, scope: dict, sweeps: int = 8) -> None:
    pos = {}
    for layer in layers:
        for i, n in enumerate(layer):
            pos[n] = i
    best, best_cross = [list(layer) for layer in layers], _crossings(layers, down, pos)
    for sweep in range(sweeps):
        rng = range(1, len(layers)) if sweep % 2 == 0 else range(len(layers) - 2, -1, -1)
        nbrs = up if sweep % 2 == 0 else down
        for k in rng:
            bary = {}
            for n in layers[k]:
                ns = nbrs.get(n, ())
                bary[n] = sum(pos[m] for m in ns) / len(ns) if ns else pos[n]
            layers[k] = _arrange(layers[k], bary, scope, 0)
            for i, n in enumerate(layers[k]):
                pos[n] = i
        cross = _crossings(layers, down, pos)
        if cross < best_cross:
            best, best_cross = [list(layer) for layer in layers], cross
    layers[:] = best


def _arrange(items: list, bary: dict, scope: dict, depth: int) -> list:
    """Sort by barycenter, keeping the members of each cluster together (recursively)."""
    groups: dict = {}
    for n in items:
        s = scope.get(n, ())
        g = s[depth] if len(s) > depth else ("solo", n)
        groups.setdefault(g, []).append(n)
    blocks = sorted(groups.items(), key=lambda kv: sum(bary[n] for n in kv[1]) / len(kv[1]))
    out = []
    for g, members in blocks:
        if isinstance(g, tuple) and g and g[0] == "solo":
            out += members
        else:
            out += _arrange(members, bary, scope, depth + 1)
    return out


def _crossings(layers: list, down: dict, pos: dict) -> int:
    total = 0
    for layer in layers[:-1]:
        segs = sorted((pos[a], pos[b]) for a in layer for b in down.get(a, ()))
        for i in range(len(segs)):
            for j in range(i + 1, len(segs)):
                if segs[i][0] < segs[j][0] and segs[i][1] > segs[j][1]:
                    total += 1
    return total


# ---- coordinates --------------------------------------------------------------------------------
def _columns(layers: list, size: dict) -> list:
    xs, x = [], MARGIN
    for layer in layers:
        w = max((size[n][0] for n in layer), default=0.0)
        gap = GAP_X if w > 0 else GAP_X / 2
        xs.append(x + gap + w / 2)
        x += w + 2 * gap
    return xs


def _sep(a: str, b: str, size: dict, scope: dict, kind: dict) -> float:
    """Centre distance of ``a`` above ``b`` in one column: the gap, plus room for the label
    and padding of every cluster that one of them is in and the other is not."""
    gap = GAP_Y if kind.get(a) != "dummy" or kind.get(b) != "dummy" else 6.0
    sa, sb = scope.get(a, ()), scope.get(b, ())
    c = len(_common(sa, sb))
    da, db = len(sa) - c, len(sb) - c
    extra = (CLUSTER_TOP * db + 4 if db else 0) + (CLUSTER_PAD * da + 4 if da else 0)
    return (size[a][1] + size[b][1]) / 2 + gap + extra


def _rows(layers: list, up: dict, down: dict, size: dict, scope: dict, kind: dict,
          rounds: int = 24) -> dict:
    y: dict = {}
    for layer in layers:
        acc = 0.0
        for i, n in enumerate(layer):
            if i:
                acc += _sep(layer[i - 1], n, size, scope, kind)
            y[n] = acc
    for r in range(rounds):
        order = range(len(layers)) if r % 2 == 0 else range(len(layers) - 1, -1, -1)
        for k in order:
            layer = layers[k]
            want = []
            for n in layer:
                total = weight = 0.0
                for m in up.get(n, []) + down.get(n, []):
                    w = 4.0 if kind.get(n) != "box" and kind.get(m) != "box" else 1.0
                    total += w * y[m]
                    weight += w
                want.append(total / weight if weight else y[n])
            seps = [_sep(a, b, size, scope, kind) for a, b in zip(layer, layer[1:])]
            for n, v in zip(layer, _fit(want, seps)):
                y[n] = v
    return y


def _fit(want: list, seps: list) -> list:
    """The positions closest to ``want`` (least squares) that keep the order and spacing:
    with z_i = y_i - S_i (S the running spacing) this is isotonic regression, solved by
    pool-adjacent-violators."""
    offs = [0.0]
    for s in seps:
        offs.append(offs[-1] + s)
    blocks: list = []  # [mean, count]
    for t in (w - o for w, o in zip(want, offs)):
        blocks.append([t, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, c2 = blocks.pop()
            m1, c1 = blocks.pop()
            blocks.append([(m1 * c1 + m2 * c2) / (c1 + c2), c1 + c2])
    z = [m for m, c in blocks for _ in range(c)]
    return [zi + o for zi, o in zip(z, offs)]


# ---- rows (wrapping) ----------------------------------------------------------------------------
def _top_scopes(layer: list, scope: dict, kind_box: set) -> frozenset:
    return frozenset(scope.get(n, ())[:2] for n in layer if n in kind_box)


def _bands(layers: list, size: dict, xs: list, scope: dict, max_width: float | None) -> list:
    """Column ranges [(first, last)] of each row."""
    n = len(layers)
    if not max_width or n < 3:
        return [(0, n - 1)]
    lefts = [xs[k] - max((size[m][0] for m in layers[k]), default=0) / 2 for k in range(n)]
    rights = [xs[k] + max((size[m][0] for m in layers[k]), default=0) / 2 for k in range(n)]
    if rights[-1] - lefts[0] <= max_width:
        return [(0, n - 1)]
    boxes = {m for k in range(0, n, 2) for m in layers[k]}
    tops = [_top_scopes(layers[k], scope, boxes) if k % 2 == 0 else None for k in range(n)]
    bands, start = [], 0
    while start < n:
        end = start
        while end + 1 < n and rights[end + 1] - lefts[start] <= max_width:
            end += 1
        if end == n - 1 or rights[n - 1] - lefts[end + 1] < 0.3 * max_width:
            bands.append((start, n - 1))  # never leave a short tail on a row of its own
            break
        cands = [k for k in range(start, end + 1) if k % 2 == 0 and k > start]
        if not cands:  # one column wider than max_width: take it alone
            end = start if start % 2 == 0 else start + 1
            bands.append((start, min(end, n - 1)))
            start = min(end, n - 1) + 1
            continue
        # cut where few wires cross (each crossing wire has one point in column k + 1),
        # preferably where one top-level module ends, as late as possible
        wide = [k for k in cands if rights[k] - lefts[start] >= 0.4 * max_width] or cands
        cut = min(wide, key=lambda k: (len(layers[k + 1]), k + 2 >= n or tops[k] == tops[k + 2],
                                       -k))
        bands.append((start, cut))
        start = cut + 1
    return bands


def _band_of(layer: int, bands: list) -> int:
    for b, (lo, hi) in enumerate(bands):
        if lo <= layer <= hi:
            return b
    return len(bands) - 1


def _wrap(layers: list, placed: dict, bands: list, top: float) -> tuple[float, float]:
    """Shift each row to the left margin and below the previous one; returns the size."""
    width, y0 = 0.0, MARGIN + top
    for lo, hi in bands:
        members = [placed[n] for k in range(lo, hi + 1) for n in layers[k]]
        if not members:
            continue
        left = min(p.x - p.w / 2 for p in members)
        ytop = min(p.y - p.h / 2 for p in members) - CLUSTER_GAP * 3
        ybot = max(p.y + p.h / 2 for p in members) + CLUSTER_GAP
        dx, dy = MARGIN - left, y0 - ytop
        for p in members:
            p.x += dx
            p.y += dy
        width = max(width, max(p.x + p.w / 2 for p in members) + MARGIN)
        y0 += (ybot - ytop) + BAND_GAP
    return width, y0 - BAND_GAP + MARGIN


# ---- routes -------------------------------------------------------------------------------------
def _exit(p: Placed) -> tuple:
    return (p.x + p.w / 2 + (3 if p.shape == "text-right" else 0), p.y)


def _entry(p: Placed, prev: tuple) -> tuple:
    if p.shape == "circle":  # onto the circle, towards where the wire comes from
        import math

        r = p.w / 2
        ang = math.atan2(prev[1] - p.y, prev[0] - p.x)
        ang = max(min(ang, math.pi), math.pi * 2 / 3) if ang > 0 else min(
            max(ang, -math.pi), -math.pi * 2 / 3)
        return (p.x + r * math.cos(ang), p.y + r * math.sin(ang))
    return (p.x - p.w / 2 - (3 if p.shape == "text-left" else 0), p.y)


def _route(e: Edge, chain: list, placed: dict, kind: dict, where: dict) -> Route:
    """The wire's points: out of its source, through its bends and label, into its consumer.
    Where it passes from one row to the next it runs right, along the gap between the rows,
    and back left (straight segments)."""
    pts: list = []
    bands: list = []
    straight: set = set()
    label = None

    def add(q, band, flat=False):
        if pts and bands[-1] != band:  # wrap to the next row
            a = pts[-1]
            row = [p for n, p in placed.items() if where.get(n) == bands[-1]]
            nxt = [p for n, p in placed.items() if where.get(n) == band]
            right = max(p.x + p.w / 2 for p in row) + 8
            gap_y = max(p.y + p.h / 2 for p in row) + BAND_GAP / 2
            left = min(p.x - p.w / 2 for p in nxt) - 8
            for r in ((right, a[1]), (right, gap_y), (left, gap_y), (left, q[1])):
                straight.add(len(pts) - 1)
                pts.append(r)
                bands.append(band)
        if flat:
            straight.add(len(pts) - 1)
        pts.append(q)
        bands.append(band)

    add(_exit(placed[e.src]), where[e.src])
    for d in chain:
        p = placed[d]
        if kind[d] == "label":
            label = p
            add((p.x - p.w / 2, p.y), where[d])
            add((p.x + p.w / 2, p.y), where[d], flat=True)
        else:
            add((p.x, p.y), where[d])
    add(_entry(placed[e.dst], pts[-1]), where[e.dst])
    return Route(pts, straight, label)


# ---- clusters -----------------------------------------------------------------------------------
def _clusters(items: list, placed: dict, where: dict, layers: list, scope: dict) -> list:
    """(key, outline points, depth) of each cluster per row, outermost first: the outline
    follows its members column by column (a skyline), so a box outside the cluster in one
    column is never covered by the cluster's extent in another."""
    column = {n: k for k, layer in enumerate(layers) for n in layer}
    extent = {}
    for k, layer in enumerate(layers):
        ps = [placed[n] for n in layer]
        if ps:
            extent[k] = (min(p.x - max(p.w, 8) / 2 for p in ps),
                         max(p.x + max(p.w, 8) / 2 for p in ps))
    members: dict = {}
    for n, path in scope.items():
        if n not in column:
            continue
        for d, key in enumerate(path):
            members.setdefault((key, d, where[n]), []).append(n)
    out = []
    for (key, d, _row), ns in members.items():
        cols: dict = {}
        for n in ns:
            p, below = placed[n], len(scope[n]) - d  # nesting levels from here down to n
            top = p.y - p.h / 2 - CLUSTER_TOP * below
            bot = p.y + p.h / 2 + CLUSTER_PAD * below
            c = cols.setdefault(column[n], [top, bot, p.x - p.w / 2, p.x + p.w / 2, below])
            c[0], c[1] = min(c[0], top), max(c[1], bot)
            c[2], c[3], c[4] = min(c[2], p.x - p.w / 2), max(c[3], p.x + p.w / 2), max(c[4], below)
        ks = sorted(cols)
        spans = []
        for k in range(ks[0], ks[-1] + 1):
            c = cols.get(k) or cols[max(j for j in ks if j < k)]
            left = (c[2] - CLUSTER_PAD * c[4] if k == ks[0]
                    else (extent.get(k - 1, (0, c[2]))[1] + extent.get(k, (c[2], 0))[0]) / 2)
            right = (c[3] + CLUSTER_PAD * c[4] if k == ks[-1]
                     else (extent.get(k, (0, c[3]))[1] + extent.get(k + 1, (c[3], 0))[0]) / 2)
            spans.append((left, right, c[0], c[1]))
        pts = []
        for left, right, top, _ in spans:
            pts += [(left, top), (right, top)]
        for left, right, _, bot in reversed(spans):
            pts += [(right, bot), (left, bot)]
        out.append((key, pts, d))
    out.sort(key=lambda c: c[2])
    return out
