"""PNG plots of a sweep (matplotlib, Agg backend: no display needed).

:func:`plot_sweep` draws, from the rows of :mod:`secagg_rec.sim.sweep`:

* ``client_compute_vs_n.png``: mean compute per client against the number of clients,
  classic SecAgg (complete graph) against SecAgg+, one panel per vector length;
* ``server_compute_vs_dropout.png``: the server's compute against the dropout rate;
* ``bytes_per_client_vs_n.png``: bytes each client sends (solid) and receives
  (dashed) against the number of clients;
* ``failure_rate_vs_dropout.png``: Monte Carlo round failure rate (95% intervals)
  against the dropout rate for each chosen ``(k, t)``, with the parameter helper's
  union bound and the dropout rate the parameters were chosen for.

Only rows with ``status == "ok"`` are plotted. Log scales are used where values span
orders of magnitude.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_sweep"]

_FLOOR = 1e-6  # smallest failure rate shown on the log axis


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _label(spec: str) -> str:
    if spec == "full":
        return "SecAgg (complete graph)"
    if spec == "auto":
        return "SecAgg+ (k, t from helper)"
    return f"SecAgg+ (k={spec})"


def _style(spec: str) -> dict[str, Any]:
    if spec == "full":
        return {"marker": "o", "linestyle": "-"}
    if spec == "auto":
        return {"marker": "s", "linestyle": "-"}
    return {"marker": "^", "linestyle": "-."}


def _integer_ticks(ax: Any, values: Sequence[int]) -> None:
    """Label a log x axis with the plotted values themselves (10, 100, 1000)."""
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    ax.xaxis.set_major_locator(FixedLocator(list(values)))
    ax.xaxis.set_minor_locator(NullLocator())
    fmt = ScalarFormatter()
    fmt.set_scientific(False)
    ax.xaxis.set_major_formatter(fmt)


def _fmt_dim(m: int) -> str:
    exp = len(str(m)) - 1
    return f"1e{exp}" if m == 10**exp else f"{m:,}"


def _panels(plt: Any, count: int, title: str) -> tuple[Any, list[Any]]:
    fig, axes = plt.subplots(1, count, figsize=(5.2 * count + 0.6, 4.4), squeeze=False)
    fig.suptitle(title, fontsize=12)
    return fig, list(axes[0])


def _save(fig: Any, path: Path, *, layout: bool = True) -> str:
    if layout:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return str(path)


def _vs_n(
    plt: Any, rows: Sequence[dict[str, Any]], out: Path, name: str, kind: str
) -> str | None:
    if not rows:
        return None
    d0 = min(r["dropout"] for r in rows)
    rows = [r for r in rows if r["dropout"] == d0]
    dims = sorted({r["dim"] for r in rows})
    if kind == "compute":
        title = f"Compute per client vs number of clients (dropout {d0:g})"
    else:
        title = f"Bytes per client vs number of clients (dropout {d0:g})"
    fig, axes = _panels(plt, len(dims), title)
    for ax, m in zip(axes, dims, strict=True):
        by_spec: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            if r["dim"] == m:
                by_spec[r["neighbors_spec"]].append(r)
        for spec, rs in sorted(by_spec.items()):
            rs.sort(key=lambda r: r["clients"])
            xs = [r["clients"] for r in rs]
            if kind == "compute":
                ax.plot(xs, [r["client_seconds_mean"] for r in rs], label=_label(spec),
                        **_style(spec))
                if spec != "full":
                    for r in rs:
                        ax.annotate(f"k={r['neighbors']}", (r["clients"], r["client_seconds_mean"]),
                                    textcoords="offset points", xytext=(4, -10), fontsize=7)
            else:
                line = ax.plot(xs, [r["bytes_up_per_client"] for r in rs],
                               label=f"{_label(spec)}: sent", **_style(spec))[0]
                ax.plot(xs, [r["bytes_down_per_client"] for r in rs], color=line.get_color(),
                        marker=_style(spec)["marker"], linestyle="--", mfc="none",
                        label=f"{_label(spec)}: received")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _integer_ticks(ax, sorted({r["clients"] for r in rows if r["dim"] == m}))
        ax.set_xlabel("clients n (log scale)")
        ax.set_ylabel("compute per client, mean (s)" if kind == "compute"
                      else "bytes per client (B, payload)")
        ax.set_title(f"m = {_fmt_dim(m)} words")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, out / name)


def _server_vs_dropout(plt: Any, rows: Sequence[dict[str, Any]], out: Path) -> str | None:
    if not rows or len({r["dropout"] for r in rows}) < 2:
        return None
    dims = sorted({r["dim"] for r in rows})
    fig, axes = _panels(plt, len(dims), "Server compute vs dropout rate")
    for ax, m in zip(axes, dims, strict=True):
        groups: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            if r["dim"] == m:
                groups[(r["clients"], r["neighbors_spec"])].append(r)
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        ns = sorted({n for n, _ in groups})
        color_of = {n: colors[i % len(colors)] for i, n in enumerate(ns)}
        for (n, spec), rs in sorted(groups.items()):
            rs.sort(key=lambda r: r["dropout"])
            style = {**_style(spec), "linestyle": "--" if spec == "full" else "-"}
            ax.plot([r["dropout"] for r in rs], [r["server_seconds"] for r in rs],
                    label=f"n={n}, {_label(spec)}", color=color_of[n], **style)
        ax.set_yscale("log")
        ax.set_xlabel("dropout rate (fraction of clients)")
        ax.set_ylabel("server compute for the round (s)")
        ax.set_title(f"m = {_fmt_dim(m)} words, drop stage: {rows[0]['drop_stage']}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, out / "server_compute_vs_dropout.png")


def _failure(plt: Any, failure: Sequence[dict[str, Any]], out: Path) -> str | None:
    if not failure:
        return None
    ns = sorted({f["clients"] for f in failure})
    title = "Round failure rate vs dropout rate: Monte Carlo against the (k, t) helper's bound"
    fig, axes = _panels(plt, len(ns), title)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, n in zip(axes, ns, strict=True):
        curves: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
        for f in failure:
            if f["clients"] == n:
                curves[(f["neighbors"], f["threshold"])].append(f)
        for i, ((k, t), fs) in enumerate(sorted(curves.items())):
            color = colors[i % len(colors)]
            fs.sort(key=lambda f: f["dropout"])
            xs = [f["dropout"] for f in fs]
            graph = "complete graph" if k == n - 1 else f"k={k}"
            planned = fs[0]["planned_dropout"]
            label = f"{graph}, t={t}" + (f" (chosen for {planned:g})" if planned is not None
                                         and k != n - 1 else "")
            pos = [
                (f["dropout"], f["rate"], f["ci_low"], f["ci_high"]) for f in fs if f["rate"] > 0
            ]
            zero = [(f["dropout"], f["ci_high"]) for f in fs if f["rate"] == 0]
            if pos:
                x, y, lo, hi = zip(*pos, strict=True)
                err = [[max(v - max(a, _FLOOR), 0) for v, a in zip(y, lo, strict=True)],
                       [b - v for v, b in zip(y, hi, strict=True)]]
                ax.errorbar(x, y, yerr=err, marker="o", linestyle="-", capsize=2, color=color,
                            label=label)
            if zero:  # offset a little per curve so that equal upper bounds stay visible
                zx, zy = zip(*zero, strict=True)
                zx = tuple(x + 0.004 * (i - (len(curves) - 1) / 2) for x in zx)
                ax.plot(zx, zy, marker="v", linestyle="none", color=color, mfc="none",
                        label=None if pos else label)
            ax.plot(xs, [max(f["bound"], _FLOOR) for f in fs], linestyle="--", color=color,
                    alpha=0.8)
            if planned is not None and k != n - 1:
                ax.axvline(planned, color=color, linestyle=":", alpha=0.7)
        ax.set_yscale("log")
        ax.set_ylim(_FLOOR / 2, 2.0)
        ax.set_xlabel("dropout rate (fraction of clients dropping after sharing keys)")
        ax.set_ylabel("P[round fails]")
        ax.set_title(f"n = {n}, {fs[0]['trials']} simulated rounds per point")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.text(
        0.5, 0.005,
        "o solid: Monte Carlo with 95% interval;  v: no failure seen (drawn at the 95% upper "
        "bound);\ndashed: the helper's union bound n*P[S <= t-1] (values below 1e-6 drawn at "
        "1e-6);  dotted: the dropout rate the (k, t) was chosen for",
        ha="center", va="bottom", fontsize=7.5,
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return _save(fig, out / "failure_rate_vs_dropout.png", layout=False)


def plot_sweep(
    rows: Sequence[dict[str, Any]],
    failure: Sequence[dict[str, Any]],
    out_dir: str | os.PathLike[str],
) -> dict[str, str]:
    """Draw the sweep's plots into ``out_dir``; return ``{plot name: path}``.

    Plots without data (e.g. a single dropout rate for the server plot) are skipped.
    """
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ok = [r for r in rows if r.get("status") == "ok"]
    drawn = {
        "plot_client_compute": _vs_n(plt, ok, out, "client_compute_vs_n.png", "compute"),
        "plot_server_compute": _server_vs_dropout(plt, ok, out),
        "plot_bytes": _vs_n(plt, ok, out, "bytes_per_client_vs_n.png", "bytes"),
        "plot_failure": _failure(plt, failure, out),
    }
    return {k: v for k, v in drawn.items() if v is not None}
