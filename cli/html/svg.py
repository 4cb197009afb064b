"""Small inline SVG charts: lines, points and a diagonal, on axes from 0 to 1 (or to the data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

SIZE, PAD = 300, 40
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


@dataclass
class Chart:
    title: str
    x_label: str
    y_label: str
    x_max: float = 1.0
    y_max: float = 1.0
    y_min: float = 0.0
    diagonal: bool = False
    lines: list[tuple[str, list[tuple[float, float]]]] = field(default_factory=list)
    points: list[tuple[str, float, float]] = field(default_factory=list)  # marked, labelled

    def _xy(self, x: float, y: float) -> tuple[float, float]:
        inner = SIZE - 2 * PAD
        y_span = max(self.y_max - self.y_min, 1e-9)
        return PAD + inner * x / self.x_max, SIZE - PAD - inner * (y - self.y_min) / y_span

    def svg(self) -> str:
        parts = self._frame() + self._ticks()
        if self.diagonal:
            (x0, y0), (x1, y1) = self._xy(0, self.y_min), self._xy(self.x_max, self.y_max)
            parts.append(
                f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#ccc" '
                'stroke-dasharray="4"/>'
            )
        parts += self._curves() + self._operating_points()
        parts.append("</svg>")
        return "".join(parts)

    def _frame(self) -> list[str]:
        """The opening tag, the plot's box and the axis labels and title."""
        return [
            f'<svg class="chart" viewBox="0 0 {SIZE} {SIZE}" role="img" '
            f'aria-label="{escape(self.title)}"><title>{escape(self.title)}</title>',
            f'<rect x="{PAD}" y="{PAD}" width="{SIZE - 2 * PAD}" height="{SIZE - 2 * PAD}" '
            'fill="none" stroke="#999"/>',
            f'<text x="{SIZE / 2}" y="{SIZE - 8}" text-anchor="middle">'
            f"{escape(self.x_label)}</text>",
            f'<text x="12" y="{SIZE / 2}" text-anchor="middle" '
            f'transform="rotate(-90 12 {SIZE / 2})">{escape(self.y_label)}</text>',
            f'<text x="{PAD}" y="{PAD - 8}" class="title">{escape(self.title)}</text>',
        ]

    def _ticks(self) -> list[str]:
        parts = []
        for value, anchor in ((0, "start"), (self.x_max, "end")):
            x, y = self._xy(value, self.y_min)
            parts.append(_text(f"{x:.1f}", f"{y + 14:.1f}", anchor, f"{value:g}", ' class="tick"'))
        x, y = self._xy(0, self.y_max)
        parts.append(
            _text(f"{x - 4:.1f}", f"{y + 4:.1f}", "end", f"{self.y_max:g}", ' class="tick"')
        )
        return parts

    def _curves(self) -> list[str]:
        parts = []
        for i, (name, pts) in enumerate(self.lines):
            colour = COLOURS[i % len(COLOURS)]
            path = " ".join("{:.1f},{:.1f}".format(*self._xy(x, y)) for x, y in pts)
            parts.append(
                f'<polyline class="line" data-name="{escape(name)}" points="{path}" '
                f'fill="none" stroke="{colour}" stroke-width="2"/>'
            )
            y = SIZE - PAD - 8 - 14 * i
            parts.append(_text(SIZE - PAD - 4, y, "end", escape(name), f' fill="{colour}"'))
        return parts

    def _operating_points(self) -> list[str]:
        parts = []
        for label, x_val, y_val in self.points:
            x, y = self._xy(x_val, y_val)
            parts.append(
                f'<circle class="operating-point" data-x="{x_val:.4f}" '
                f'data-y="{y_val:.4f}" cx="{x:.1f}" cy="{y:.1f}" r="5" fill="#000"/>'
            )
            right = x_val > 0.6 * self.x_max  # label on the side with room
            anchor, dx = ("end", -8) if right else ("start", 8)
            parts.append(_text(f"{x + dx:.1f}", f"{y + 16:.1f}", anchor, escape(label)))
        return parts


def _text(x: object, y: object, anchor: str, body: str, attributes: str = "") -> str:
    """A <text> element; x and y as the caller formatted them, body already escaped."""
    return f'<text x="{x}" y="{y}" text-anchor="{anchor}"{attributes}>{body}</text>'
