"""The chart of ``python -m bench.pair``: throughput and p99 latency, per mix and configuration.

Bars are told apart by hatching and by the (a)-(e) label under each one, not by colour alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.pair_stats import CONFIGS, LABELS, MIXES

HATCHES = {
    "unreplicated": "",
    "builtin": "xx",
    "colopp": "//",
    "colopp_prerelease": "..",
    "colopp_prerelease_semiactive": "\\\\",
}
COLOURS = {
    "unreplicated": "#d9d9d9",
    "builtin": "#fdae61",
    "colopp": "#abd9e9",
    "colopp_prerelease": "#2c7bb6",
    "colopp_prerelease_semiactive": "#1a9641",
}


def draw_chart(result: dict[str, Any], path: Path) -> None:
    """Write a PNG with two panels (requests/s, p99 ms), bars grouped by mix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mixes = [m for m in MIXES if result.get(m)]
    configs = [c for c in CONFIGS if any(c in result[m] for m in mixes)]
    meta = result.get("meta", {})
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    panels = (
        ("rps", "requests/s (higher is better)"),
        ("p99_ms", "p99 latency, ms (lower is better)"),
    )
    width = 0.8 / max(1, len(configs))
    for ax, (figure, title) in zip(axes, panels, strict=True):
        for i, config in enumerate(configs):
            xs, ys = [], []
            for g, mix in enumerate(mixes):
                if config in result[mix]:
                    xs.append(g + (i - (len(configs) - 1) / 2) * width)
                    ys.append(result[mix][config][figure])
            bars = ax.bar(
                xs,
                ys,
                width,
                label=LABELS[config],
                color=COLOURS[config],
                hatch=HATCHES[config],
                edgecolor="black",
                linewidth=0.8,
            )
            ax.bar_label(bars, fmt="%.0f", fontsize=8, padding=2)
            for x in xs:
                ax.annotate(
                    LABELS[config][:3],
                    (x, 0),
                    xytext=(0, -12),
                    textcoords="offset points",
                    ha="center",
                    fontsize=8,
                )
        ax.set_xticks(range(len(mixes)))
        ax.set_xticklabels(
            [f"{m.replace('_', '-')} ({MIXES[m]:.0%} PUT)" for m in mixes], fontsize=10
        )
        ax.tick_params(axis="x", pad=16, length=0)
        ax.set_title(title, fontsize=11)
        ax.margins(y=0.15)
        ax.grid(axis="y", linestyle=":", linewidth=0.6)
        ax.set_axisbelow(True)
    axes[0].legend(fontsize=8, loc="upper right")
    fig.suptitle(
        f"colopp side by side: wrk {meta.get('connections')} connections, "
        f"{meta.get('duration_s')} s per run, {meta.get('accel', '?')}, "
        f"{meta.get('machine', {}).get('cpus', '?')} host CPUs",
        fontsize=12,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
