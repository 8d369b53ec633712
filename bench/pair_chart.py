"""The chart of ``python -m bench.pair``: closed-loop throughput, open-loop p50 and p99, per
mix and configuration.

Bars are told apart by hatching and by the short label under each one, not by colour alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.pair_figures import CONFIGS, LABELS, MIXES

HATCHES = {
    "unreplicated": "",
    "builtin": "xx",
    "colopp": "//",
    "colopp_prerelease": "..",
    "colopp_prerelease_semiactive": "\\\\",
    "colopp_semiactive": "--",
}
COLOURS = {
    "unreplicated": "#d9d9d9",
    "builtin": "#fdae61",
    "colopp": "#abd9e9",
    "colopp_prerelease": "#2c7bb6",
    "colopp_prerelease_semiactive": "#1a9641",
    "colopp_semiactive": "#a6d96a",
}
SHORT = {
    "unreplicated": "a",
    "builtin": "b",
    "colopp": "c",
    "colopp_prerelease": "d",
    "colopp_prerelease_semiactive": "e",
    "colopp_semiactive": "c+s",
}
PANELS = (
    ("closed_loop", "rps", "closed loop: requests/s (higher is better)"),
    ("open_loop", "p50_ms", "open loop: p50 ms (lower is better)"),
    ("open_loop", "p99_ms", "open loop: p99 ms (lower is better)"),
)


def draw_chart(result: dict[str, Any], path: Path) -> None:
    """Write a PNG with three panels, bars grouped by mix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = result.get("meta", {})
    fig, axes = plt.subplots(1, len(PANELS), figsize=(17, 5.4))
    for ax, (loop, figure, title) in zip(axes, PANELS, strict=True):
        data = result.get(loop, {})
        mixes = [m for m in MIXES if data.get(m)]
        configs = [c for c in CONFIGS if any(c in data[m] for m in mixes)]
        width = 0.8 / max(1, len(configs))
        for i, config in enumerate(configs):
            xs, ys = [], []
            for g, mix in enumerate(mixes):
                value = data[mix].get(config, {}).get(figure)
                if value is not None:
                    xs.append(g + (i - (len(configs) - 1) / 2) * width)
                    ys.append(value)
            bars = ax.bar(
                xs, ys, width, label=LABELS[config], color=COLOURS[config],
                hatch=HATCHES[config], edgecolor="black", linewidth=0.8,
            )  # fmt: skip
            ax.bar_label(bars, fmt="%.3g", fontsize=7, padding=2)
            for x in xs:
                ax.annotate(SHORT[config], (x, 0), xytext=(0, -12), textcoords="offset points",
                            ha="center", fontsize=7)  # fmt: skip
        ax.set_xticks(range(len(mixes)))
        ax.set_xticklabels(mixes, fontsize=9)
        ax.tick_params(axis="x", pad=16, length=0)
        ax.set_title(title, fontsize=10)
        ax.margins(y=0.15)
        ax.grid(axis="y", linestyle=":", linewidth=0.6)
        ax.set_axisbelow(True)
    axes[0].legend(fontsize=7, loc="upper right")
    hosts = "two hosts (cpusets)" if meta.get("two_hosts") else "shared CPUs"
    fig.suptitle(
        f"colopp side by side: {meta.get('connections')} connections, "
        f"{meta.get('duration_s')} s windows, {meta.get('accel', '?')}, {hosts}",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
