"""What the side-by-side benchmarks share: interleaved timing, the machine's sgemm peak, the
machine description (load average included) and JSON / PNG output under benchmarks/results/.

Timing is interleaved: every system runs once per round, rounds repeat, and each system's median
is reported next to its minimum and maximum. Other jobs on the machine then slow every system
alike instead of whichever happened to run during a burst.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def process_bytes(key: str = "VmRSS") -> int:
    """This process's resident set (`VmRSS`) or its high-water mark (`VmHWM`), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def reset_peak() -> None:
    """Reset the resident-set high-water mark (Linux: write 5 to clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def cores() -> int:
    from einrel.devices import cores as einrel_cores

    return einrel_cores()


def load_avg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Unix
        return []


def blas_info() -> list[dict[str, Any]]:
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "version", "architecture", "num_threads")
    return [{k: d.get(k) for k in keep} for d in threadpool_info()]


def machine(threads: int) -> dict[str, Any]:
    """Everything a reader needs to judge the numbers, taken when the run starts."""
    import torch

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": cores(),
        "threads": threads,
        "blas": blas_info(),
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
        "load_avg_start": load_avg(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def warn_env() -> None:
    """The benchmarks must run without the OpenBLAS overrides the test environment sets."""
    set_ = [k for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if os.environ.get(k)]
    if set_:
        print(
            f"warning: {', '.join(set_)} set; run as "
            "`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python ...`",
            file=sys.stderr,
        )


def interleaved(
    fns: Mapping[str, Callable[[], Any]], runs: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call for each system; one call of each per round, `runs` rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def summary(times: list[float]) -> dict[str, Any]:
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "runs_s": times,
    }


def sgemm_peak(threads: int, n: int = 4096, runs: int = 5) -> dict[str, Any]:
    """GFLOP/s of one big float32 np.matmul (n x n x n) with `threads` BLAS threads."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        times = interleaved({"sgemm": lambda: np.matmul(a, b, out=out)}, runs)["sgemm"]
    flops = 2.0 * n**3
    return {
        "n": n,
        "threads": threads,
        "median_gflops": flops / statistics.median(times) / 1e9,
        "best_gflops": flops / min(times) / 1e9,
        **summary(times),
    }


def max_rel_error(got: Any, want: Any) -> float:
    from einrel.workloads import max_rel_error as mre

    return mre(np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64))


def verdict(rows: dict[str, dict[str, Any]], peak: float, checks_passed: bool) -> dict[str, Any]:
    """einrel against the faster of numpy/torch (target 0.85x) and the best dask variant, from
    rows of `summary` plus "gflops"; `peak` is the sgemm GFLOP/s measured in the same run."""
    dask_names = [k for k in rows if k.startswith("dask")]
    best_dask = min(dask_names, key=lambda k: rows[k]["median_s"]) if dask_names else None
    e = rows["einrel"]["median_s"]
    np_t, th_t = rows["numpy"]["median_s"], rows["torch"]["median_s"]
    ratio = min(np_t, th_t) / e
    return {
        "einrel_over_faster_of_numpy_torch": ratio,
        "faster_of_numpy_torch": "numpy" if np_t <= th_t else "torch",
        "target_0.85x": ratio >= 0.85,
        "best_dask": best_dask,
        "einrel_over_best_dask": (rows[best_dask]["median_s"] / e) if best_dask else None,
        "faster_than_dask": (rows[best_dask]["median_s"] > e) if best_dask else None,
        "einrel_fraction_of_sgemm_peak": rows["einrel"]["gflops"] / peak,
        "checks_passed": checks_passed,
    }


def verdict_line(v: dict[str, Any]) -> str:
    """One line of `verdict` for the console."""
    line = (
        f"einrel throughput = {v['einrel_over_faster_of_numpy_torch']:.2f} x "
        f"{v['faster_of_numpy_torch']} (target >= 0.85)"
    )
    if v["best_dask"]:
        line += f"; vs best dask ({v['best_dask']}): {v['einrel_over_best_dask']:.2f} x"
    return line


def write(name: str, doc: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc.setdefault("machine", {})["load_avg_end"] = load_avg()
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2, default=float) + "\n")
    return path


def keep_measured(name: str, doc: dict[str, Any], only: str) -> dict[str, Any]:
    """`doc` with the parts of the last results that this run (`--only <part>`) leaves alone."""
    kept = json.loads((RESULTS / f"{name}.json").read_text())
    doc.update({k: v for k, v in kept.items() if k != "machine"})
    doc["remeasured"] = only
    return doc


def finish(name: str, doc: dict[str, Any], plot: Callable[[dict[str, Any], Path], Any]) -> Path:
    """Write the results JSON and its PNG (drawn by `plot`), and say where they are."""
    out = write(name, doc)
    plot(doc, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return out


def bar_plot(
    path: Path,
    title: str,
    rows: list[tuple[str, float, float, float]],
    ylabel: str,
    hline: tuple[float, str] | None = None,
    highlight: str = "einrel",
) -> None:
    """Bars of (label, median, min, max) with min-max whiskers; optional reference line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 1.3 * len(rows) + 2), 4.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(rows))
    med = np.array([r[1] for r in rows])
    lo = med - np.array([r[2] for r in rows])
    hi = np.array([r[3] for r in rows]) - med
    colors = ["#1f77b4" if r[0].startswith(highlight) else "#9e9e9e" for r in rows]
    ax.bar(x, med, 0.6, color=colors, yerr=np.vstack([lo, hi]), capsize=4)
    for i, m in enumerate(med):
        ax.text(i + 0.32, m, f"{m:.3g}", ha="left", va="center", fontsize="small")
    if hline is not None:
        ax.axhline(hline[0], color="#d62728", lw=1.0, ls="--")
        ax.text(len(rows) - 0.5, hline[0], hline[1], color="#d62728", ha="right", va="bottom")
    ax.set_xticks(x)
    ax.set_xticklabels([r[0] for r in rows], fontsize="small")
    ax.set_ylabel(ylabel)
    ax.set_title(title, loc="left", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """Lower quartile, median and upper quartile (linear interpolation, as numpy's default)."""
    q1, q2, q3 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return float(q1), float(q2), float(q3)


def compare_plot(
    path: Path,
    title: str,
    rows: list[tuple[str, list[float]]],
    xlabel: str,
    ref: str,
    lines: Sequence[tuple[float, str]] = (),
    unit: str = "",
    highlight: str = "einrel",
) -> None:
    """Horizontal bars of each system's median (`rows`: label, per-run values; higher is
    better) with a thin interquartile line, each labelled with its value and its ratio to the
    `ref` row's median; `lines` are reference values (a peak, a target) drawn across.

    Min-max whiskers let one noisy run hide a 10 % difference; the labelled ratio states it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    stats = [quartiles(v) for _, v in rows]
    ref_med = stats[[r[0] for r in rows].index(ref)][1]
    fig = Figure(figsize=(9.5, 1.2 + 0.55 * len(rows)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(rows))
    med = np.array([s[1] for s in stats])
    colors = [
        "#1f77b4" if r[0].startswith(highlight) else "#555555" if r[0] == ref else "#b0b0b0"
        for r in rows
    ]
    ax.barh(y, med, 0.62, color=colors)
    ax.hlines(y, [s[0] for s in stats], [s[2] for s in stats], color="black", lw=1.6)
    top = max([*(s[2] for s in stats), *(x for x, _ in lines)])
    for i, (label, _) in enumerate(rows):
        ratio = "reference" if label == ref else f"{med[i] / ref_med:.2f}× {ref}"
        ax.text(
            max(med[i], stats[i][2]) + 0.015 * top,
            i,
            f"{med[i]:.3g}{unit}  ({ratio})",
            va="center",
            fontsize="small",
            fontweight="bold" if label.startswith(highlight) else "normal",
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0},  # over the lines
        )
    for k, (x, text) in enumerate(lines):
        color = ("#d62728", "#2ca02c", "#9467bd")[k % 3]
        ax.axvline(x, color=color, lw=1.0, ls="--")
        ax.text(x, -0.75, f" {text}", color=color, ha="left", va="bottom", fontsize="small")
    ax.set_yticks(y)
    ax.set_yticklabels([r[0] for r in rows])
    ax.set_ylim(len(rows) - 0.5, -1.0)  # first row on top, room for the line labels
    ax.set_xlim(0, top * 1.32)
    ax.set_xlabel(xlabel)
    ax.set_title(title, loc="left", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
