"""The timeline plot: inline SVG with fault windows shaded, success rate and latency over time.

No external assets and no ``xmlns`` URL, so the HTML page that embeds it is self-contained. The
x axis is scenario time (journal time divided by the time scale, from the timeline start), shown
as wall-clock times when the run has a ``clock_start`` anchor. One line per series: per tunnel
when the run has several tunnels (e.g. legacy next to named), else all traffic. A third panel
stacks each bucket's successful requests by the PoP that answered them (paler: forwarded to a
peer PoP), failed ones in red and indeterminate ones in grey.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape

from harness.journal.history import NS_PER_S, History, Operation
from harness.report.sla import nearest_rank
from harness.scenario.durations import format_duration

SERIES_COLORS = ("#1f6fb2", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285")
POP_COLORS = ("#364fc7", "#2b8a3e", "#862e9c", "#0b7285", "#e67700", "#5c940d")
FAILED_COLOR = "#e03131"
INDETERMINATE_COLOR = "#adb5bd"
OUTCOME_KEYS = ("failed", "indeterminate")
SERVED_HEIGHT = 90
FAULT_COLORS = ("#f59f00", "#e03131", "#7048e8", "#1098ad", "#d6336c", "#5c940d")
BUCKET_CHOICES = (0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
TICK_CHOICES = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800)
MAX_BUCKETS = 120

WIDTH = 960
LEFT, RIGHT = 70, 24
PANEL_HEIGHT = 170
PANEL_GAP = 40
LABEL_ROW = 15


@dataclass(frozen=True)
class Bucket:
    """One time bucket of one series (``x`` = bucket start, scenario seconds)."""

    x: float
    ok: int
    fail: int
    info: int
    p50_ms: float | None
    p95_ms: float | None

    @property
    def success_pct(self) -> float | None:
        decided = self.ok + self.fail
        return None if decided == 0 else 100.0 * self.ok / decided


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    buckets: list[Bucket]


class _Axis:
    """Maps journal time (ns) to scenario seconds and to pixels."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.scale = history.time_scale or 1.0
        first = min((r.t for r in history.records), default=0)
        self.x_min = min(0.0, self.scenario(first))
        self.x_max = max(self.scenario(history.end_t), self.x_min + 1.0)
        self.left = LEFT
        self.right = WIDTH - RIGHT

    def scenario(self, t: int) -> float:
        return (t - self.history.start_t) / NS_PER_S / self.scale

    def px(self, x: float) -> float:
        span = self.x_max - self.x_min
        return self.left + (x - self.x_min) / span * (self.right - self.left)

    def ticks(self) -> list[float]:
        span = self.x_max - self.x_min
        step = next((s for s in TICK_CHOICES if span / s <= 10), TICK_CHOICES[-1])
        first = math.ceil(self.x_min / step) * step
        count = int((self.x_max - first) // step) + 1
        return [first + i * step for i in range(max(count, 0))]

    def tick_labels(self, ticks: Sequence[float]) -> list[str]:
        """Scenario-time labels, or UTC wall-clock times (``HH:MM``, with seconds if any tick
        needs them) when the run has a ``clock_start`` anchor."""
        clock = self.history.run.clock_start if self.history.run else None
        start = None
        if clock:
            try:
                start = datetime.fromisoformat(clock.replace("Z", "+00:00"))
            except ValueError:
                start = None
        if start is None:
            return [("-" if x < 0 else "") + format_duration(abs(x)) for x in ticks]
        moments = [(start + timedelta(seconds=x)).astimezone(UTC) for x in ticks]
        with_seconds = any(m.second or m.microsecond for m in moments)
        return [m.strftime("%H:%M:%S" if with_seconds else "%H:%M") for m in moments]


def _bucket_seconds(history: History) -> float:
    span = max(history.seconds(history.end_t), 1.0)
    return next((b for b in BUCKET_CHOICES if span / b <= MAX_BUCKETS), BUCKET_CHOICES[-1])


def build_series(history: History) -> tuple[list[Series], float]:
    """Per-series buckets of visitor traffic, and the bucket width in real seconds."""
    width = _bucket_seconds(history)
    width_ns = round(width * NS_PER_S)
    axis = _Axis(history)
    groups: dict[str, list[Operation]] = {}
    tunnels = history.tunnel_names()
    for op in history.visitor_ops():
        key = (history.tunnel_of(op) or "-") if len(tunnels) > 1 else "all requests"
        groups.setdefault(key, []).append(op)
    series = []
    for index, (key, ops) in enumerate(sorted(groups.items())):
        by_bucket: dict[int, list[Operation]] = {}
        for op in ops:
            by_bucket.setdefault(op.invoke_t // width_ns, []).append(op)
        buckets = []
        for number in range(min(by_bucket), max(by_bucket) + 1):
            members = by_bucket.get(number, [])
            latencies = sorted(
                op.latency_ns / 1e6
                for op in members
                if op.phase == "ok" and op.latency_ns is not None
            )
            buckets.append(
                Bucket(
                    x=axis.scenario(number * width_ns + width_ns // 2),
                    ok=sum(op.phase == "ok" for op in members),
                    fail=sum(op.phase == "fail" for op in members),
                    info=sum(op.phase == "info" for op in members),
                    p50_ms=nearest_rank(latencies, 0.5) if latencies else None,
                    p95_ms=nearest_rank(latencies, 0.95) if latencies else None,
                )
            )
        name = key if key in ("all requests", "-") else f"{key} ({history.tunnel_kind(key)})"
        series.append(Series(name, SERIES_COLORS[index % len(SERIES_COLORS)], buckets))
    return series, width


def _path(points: Sequence[tuple[float, float | None]]) -> str:
    parts: list[str] = []
    pen_down = False
    for x, y in points:
        if y is None:
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{x:.1f},{y:.1f}")
        pen_down = True
    return " ".join(parts)


def _fault_rows(axis: _Axis, history: History) -> list[tuple[int, float, float, str, str]]:
    """``(row, x0, x1, label, color)`` for each fault, labels stacked so they do not overlap."""
    rows_end: list[float] = []
    placed = []
    kinds: list[str] = []
    for fault in history.faults:
        x0 = axis.px(axis.scenario(fault.start_t))
        x1 = axis.px(axis.scenario(fault.end_or(history.end_t)))
        label = fault.name or fault.label()
        text_end = x0 + 6.2 * len(label) + 8
        row = next((i for i, end in enumerate(rows_end) if end <= x0), len(rows_end))
        if row == len(rows_end):
            rows_end.append(0.0)
        rows_end[row] = max(text_end, x1)
        if fault.fault not in kinds:
            kinds.append(fault.fault)
        color = FAULT_COLORS[kinds.index(fault.fault) % len(FAULT_COLORS)]
        placed.append((row, x0, max(x1, x0 + 1.5), label, color))
    return placed


def timeline_svg(history: History, title: str = "") -> str:
    """The SVG element (a string) for ``report.html``."""
    axis = _Axis(history)
    series, bucket_s = build_series(history)
    faults = _fault_rows(axis, history)
    label_rows = max((row for row, *_ in faults), default=-1) + 1
    top = 34 + label_rows * LABEL_ROW
    rate_top = top
    lat_top = rate_top + PANEL_HEIGHT + PANEL_GAP
    served_top = lat_top + PANEL_HEIGHT + PANEL_GAP
    served = served_by_pop(history, bucket_s)
    axis_y = served_top + SERVED_HEIGHT
    legend_y = axis_y + 40
    height = legend_y + 26 + (LABEL_ROW + 6 if served else 0)
    out: list[str] = [
        f'<svg class="timeline" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
        f'height="{height}" role="img" aria-label="{escape(title or "timeline")}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>',
    ]
    if title:
        out.append(
            f'<text x="{LEFT}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>'
        )
    for row, x0, x1, label, color in faults:
        y = 34 + row * LABEL_ROW
        out.append(
            f'<g class="fault"><title>{escape(label)}</title>'
            f'<rect x="{x0:.1f}" y="{rate_top}" width="{x1 - x0:.1f}" height="{PANEL_HEIGHT}" '
            f'fill="{color}" fill-opacity="0.18"/>'
            f'<rect x="{x0:.1f}" y="{lat_top}" width="{x1 - x0:.1f}" height="{PANEL_HEIGHT}" '
            f'fill="{color}" fill-opacity="0.18"/>'
            f'<rect x="{x0:.1f}" y="{served_top}" width="{x1 - x0:.1f}" '
            f'height="{SERVED_HEIGHT}" fill="{color}" fill-opacity="0.18"/>'
            f'<line x1="{x0:.1f}" y1="{y - 10}" x2="{x0:.1f}" y2="{axis_y}" stroke="{color}" '
            'stroke-opacity="0.6"/>'
            f'<text x="{x0 + 3:.1f}" y="{y}" fill="{color}">{escape(label)}</text></g>'
        )
    out.extend(_rate_panel(axis, series, rate_top))
    out.extend(_latency_panel(axis, series, lat_top))
    out.extend(_served_panel(axis, served, served_top, bucket_s))
    ticks = axis.ticks()
    for x, label in zip(ticks, axis.tick_labels(ticks), strict=True):
        px = axis.px(x)
        out.append(
            f'<line x1="{px:.1f}" y1="{axis_y}" x2="{px:.1f}" y2="{axis_y + 4}" stroke="#495057"/>'
        )
        out.append(
            f'<text x="{px:.1f}" y="{axis_y + 16}" text-anchor="middle">{escape(label)}</text>'
        )
    unit = "wall clock (UTC)" if history.run and history.run.clock_start else "scenario time"
    scale = (
        f"; time scale {history.time_scale:g} (1 s of scenario = {history.time_scale:g} s real)"
        if history.time_scale != 1
        else ""
    )
    out.append(
        f'<text x="{(axis.left + axis.right) / 2:.1f}" y="{axis_y + 31}" text-anchor="middle" '
        f'fill="#495057">{unit}{scale}; buckets of {format_duration(bucket_s)} real</text>'
    )
    x = float(LEFT)
    for item in series:
        out.append(
            f'<line x1="{x:.1f}" y1="{legend_y}" x2="{x + 18:.1f}" y2="{legend_y}" '
            f'stroke="{item.color}" stroke-width="2.5"/>'
        )
        out.append(f'<text x="{x + 23:.1f}" y="{legend_y + 4}">{escape(item.name)}</text>')
        x += 40 + 6.2 * len(item.name)
    out.append(
        f'<rect x="{x:.1f}" y="{legend_y - 6}" width="18" height="12" fill="#f59f00" '
        'fill-opacity="0.3"/>'
    )
    out.append(f'<text x="{x + 23:.1f}" y="{legend_y + 4}">fault window</text>')
    x += 120
    out.append(
        f'<line x1="{x:.1f}" y1="{legend_y}" x2="{x + 18:.1f}" y2="{legend_y}" '
        'stroke="#495057" stroke-dasharray="4 3"/>'
    )
    out.append(f'<text x="{x + 23:.1f}" y="{legend_y + 4}">p95 latency (solid: p50)</text>')
    x, y = float(LEFT), legend_y + LABEL_ROW + 6
    keys = {key for bucket in served.values() for key in bucket}
    pops = sorted({pop for pop, _ in keys})
    for pop in sorted(pops, key=lambda p: (p in OUTCOME_KEYS, p)):
        color, name = _served_style(pop, pops)
        for forwarded in (False, True):
            label = f"{name}, forwarded to a peer" if forwarded else name
            if (pop, forwarded) not in keys:
                continue
            out.append(
                f'<rect x="{x:.1f}" y="{y - 6}" width="18" height="12" fill="{color}" '
                f'fill-opacity="{0.35 if forwarded else 0.85}"/>'
            )
            out.append(f'<text x="{x + 23:.1f}" y="{y + 4}">{escape(label)}</text>')
            x += 34 + 6.2 * len(label)
    out.append("</svg>")
    return "\n".join(out)


def _frame(axis: _Axis, top: int, label: str) -> list[str]:
    return [
        f'<rect x="{axis.left}" y="{top}" width="{axis.right - axis.left}" '
        f'height="{PANEL_HEIGHT}" fill="none" stroke="#adb5bd"/>',
        f'<text x="12" y="{top + PANEL_HEIGHT / 2:.1f}" transform="rotate(-90 12 '
        f'{top + PANEL_HEIGHT / 2:.1f})" text-anchor="middle">{escape(label)}</text>',
    ]


def _rate_panel(axis: _Axis, series: list[Series], top: int) -> list[str]:
    out = _frame(axis, top, "success rate %")
    for pct in (0, 50, 90, 100):
        y = top + PANEL_HEIGHT * (1 - pct / 100)
        out.append(
            f'<line x1="{axis.left}" y1="{y:.1f}" x2="{axis.right}" y2="{y:.1f}" stroke="#e9ecef"/>'
        )
        out.append(f'<text x="{axis.left - 6}" y="{y + 4:.1f}" text-anchor="end">{pct}</text>')
    for item in series:
        points = [
            (
                axis.px(b.x),
                None if b.success_pct is None else top + PANEL_HEIGHT * (1 - b.success_pct / 100),
            )
            for b in item.buckets
        ]
        out.append(
            f'<path class="series" d="{_path(points)}" fill="none" stroke="{item.color}" '
            'stroke-width="2"/>'
        )
    return out


ServedBuckets = dict[float, dict[tuple[str, bool], int]]


def served_by_pop(history: History, bucket_s: float) -> ServedBuckets:
    """Per bucket (its middle, scenario seconds): successful requests by (PoP that answered,
    forwarded), and the failed and indeterminate ones as ``("failed"|"indeterminate", False)``."""
    width_ns = round(bucket_s * NS_PER_S)
    axis = _Axis(history)
    buckets: ServedBuckets = {}
    for op in history.visitor_ops():
        pop = op.pop or "-"
        tunnel_pop = op.value.get("tunnel_pop")
        forwarded = isinstance(tunnel_pop, str) and tunnel_pop != pop
        if op.phase != "ok":
            pop, forwarded = ("failed" if op.phase == "fail" else "indeterminate"), False
        x = axis.scenario((op.invoke_t // width_ns) * width_ns + width_ns // 2)
        counts = buckets.setdefault(x, {})
        counts[(pop, forwarded)] = counts.get((pop, forwarded), 0) + 1
    return buckets


def _served_style(pop: str, pops: Sequence[str]) -> tuple[str, str]:
    if pop == "failed":
        return FAILED_COLOR, "failed"
    if pop == "indeterminate":
        return INDETERMINATE_COLOR, "indeterminate"
    named = [p for p in pops if p not in OUTCOME_KEYS]
    return POP_COLORS[named.index(pop) % len(POP_COLORS)], f"served by {pop}"


def _served_panel(axis: _Axis, served: ServedBuckets, top: int, bucket_s: float) -> list[str]:
    out = [
        f'<rect x="{axis.left}" y="{top}" width="{axis.right - axis.left}" '
        f'height="{SERVED_HEIGHT}" fill="none" stroke="#adb5bd"/>',
        f'<text x="12" y="{top + SERVED_HEIGHT / 2:.1f}" transform="rotate(-90 12 '
        f'{top + SERVED_HEIGHT / 2:.1f})" text-anchor="middle">requests</text>',
    ]
    if not served:
        return out
    pops = sorted({pop for bucket in served.values() for pop, _ in bucket})
    most = max(sum(bucket.values()) for bucket in served.values())
    half = (axis.px(bucket_s / axis.scale) - axis.px(0.0)) / 2 * 0.9
    for x, bucket in sorted(served.items()):
        y = float(top + SERVED_HEIGHT)
        for key in sorted(bucket, key=lambda k: (k[0] in OUTCOME_KEYS, k[0], k[1])):
            pop, forwarded = key
            height = SERVED_HEIGHT * bucket[key] / most
            y -= height
            color, name = _served_style(pop, pops)
            what = f"{name}{', forwarded to a peer' if forwarded else ''}: {bucket[key]}"
            out.append(
                f'<rect x="{axis.px(x) - half:.1f}" y="{y:.1f}" width="{2 * half:.1f}" '
                f'height="{height:.1f}" fill="{color}" '
                f'fill-opacity="{0.35 if forwarded else 0.85}"><title>{escape(what)}</title></rect>'
            )
    return out


def _latency_panel(axis: _Axis, series: list[Series], top: int) -> list[str]:
    out = _frame(axis, top, "latency ms (log)")
    values = [
        v
        for s in series
        for b in s.buckets
        for v in (b.p50_ms, b.p95_ms)
        if v is not None and v > 0
    ]
    if not values:
        out.append(
            f'<text x="{(axis.left + axis.right) / 2:.1f}" y="{top + PANEL_HEIGHT / 2:.1f}"'
            ' text-anchor="middle" fill="#868e96">no successful requests</text>'
        )
        return out
    low = math.floor(math.log10(min(values)))
    high = max(math.ceil(math.log10(max(values))), low + 1)

    def y_of(ms: float | None) -> float | None:
        if ms is None or ms <= 0:
            return None
        return top + PANEL_HEIGHT * (1 - (math.log10(ms) - low) / (high - low))

    for exponent in range(low, high + 1):
        y = y_of(10.0**exponent)
        assert y is not None
        out.append(
            f'<line x1="{axis.left}" y1="{y:.1f}" x2="{axis.right}" y2="{y:.1f}" stroke="#e9ecef"/>'
        )
        out.append(
            f'<text x="{axis.left - 6}" y="{y + 4:.1f}" text-anchor="end">{10.0**exponent:g}</text>'
        )
    for item in series:
        p50 = [(axis.px(b.x), y_of(b.p50_ms)) for b in item.buckets]
        p95 = [(axis.px(b.x), y_of(b.p95_ms)) for b in item.buckets]
        out.append(
            f'<path class="series" d="{_path(p50)}" fill="none" stroke="{item.color}" '
            'stroke-width="2"/>'
        )
        out.append(
            f'<path d="{_path(p95)}" fill="none" stroke="{item.color}" '
            'stroke-width="1" stroke-dasharray="4 3" stroke-opacity="0.8"/>'
        )
    return out
