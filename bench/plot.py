"""Draws the plots of docs/benchmarks.md from a run's results (the JSON file
bench/bench.py writes):

    docs/img/partitioned.svg   append TPS against the number of partitions
    docs/img/transfers.svg     transfer TPS against the number of accounts

one panel per durability setting, each side's median TPS with the range of
its rounds, and a caption naming the machine, PostgreSQL and the settings.
A plot whose case the run did not measure is left as it is.

    python3 bench/plot.py [results.json] [output directory]

The SVGs are reproducible: the same data gives the same bytes.
"""

import json
import os
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
RESULTS = os.path.join(ROOT, "bench", "results", "latest.json")
OUTPUT = os.path.join(ROOT, "docs", "img")

# The same ids in every SVG for the same drawing, and no creation date.
matplotlib.rcParams["svg.hashsalt"] = "raceguard-bench"
matplotlib.rcParams["svg.fonttype"] = "path"
METADATA = {"Date": None}

DURABILITY_TITLES = {
    "safe": "safe: fsync, full_page_writes, synchronous_commit on",
    "fast": "fast: fsync, full_page_writes, synchronous_commit off",
}


def caption(results, what, width):
    """The caption, wrapped to a figure `width` inches wide."""
    host = results["machine"]
    memory = f"{host['memory_gib']:g} GiB RAM" if host.get("memory_gib") else "RAM unknown"
    text = (f"{what} raceguard {results['raceguard']}, PostgreSQL {results['postgresql']}, {results['date']};"
            f" {host['cores']} cores ({host['cpu']}), {memory}. Cluster settings: {results['settings']}."
            f" Medians of interleaved rounds; bars: lowest and highest round.")
    if results.get("quick"):
        text += " QUICK MODE (development sizes): not the published figures."
    return textwrap.fill(text, int(width * 17))


def measurements(results, case):
    return [m for m in results["measurements"] if m["case"] == case]


def settings_measured(rows):
    order = ["safe", "fast"]
    present = {m["durability"] for m in rows}
    return [name for name in order if name in present] + sorted(present - set(order))


def errorbar(axis, xs, rows, **style):
    medians = [m["median"] for m in rows]
    low = [m["median"] - min(m["rounds"]) for m in rows]
    high = [max(m["rounds"]) - m["median"] for m in rows]
    axis.errorbar(xs, medians, yerr=[low, high], capsize=3, **style)


def panels(count):
    """One panel per durability setting, with room below for the legend and
    the caption."""
    figure, axes = plt.subplots(1, count, figsize=(6.5 * count, 6.8), squeeze=False)
    figure.subplots_adjust(bottom=0.36, top=0.86, left=0.12 / count, right=1 - 0.04 / count, wspace=0.22)
    return figure, list(axes[0])


def finish(figure, axes, what, results, path):
    for axis in axes:
        axis.set_ylim(bottom=0)
        axis.grid(True, linewidth=0.4, alpha=0.5)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.27),
                  ncol=2 if len(axes) > 1 else 1, frameon=False)
    width = figure.get_size_inches()[0]
    figure.text(0.02, 0.01, caption(results, what, width), fontsize=7, va="bottom", ha="left")
    figure.savefig(path, format="svg", metadata=METADATA)
    plt.close(figure)
    print(f"wrote {path}")


def plot_partitioned(results, path):
    rows = measurements(results, "partitioned")
    if not rows:
        return False
    settings = settings_measured(rows)
    figure, axes = panels(len(settings))
    for axis, setting in zip(axes, settings):
        here = [m for m in rows if m["durability"] == setting]
        for guard, colour in (("raceguard", "tab:blue"), ("plain", "tab:grey")):
            label = "running_balance" if guard == "raceguard" else "plain INSERT (no trigger)"
            monthly = sorted((m for m in here if m["layout"] == "monthly" and m["guard"] == guard),
                             key=lambda m: m["partitions"])
            if monthly:
                errorbar(axis, [m["partitions"] for m in monthly], monthly, color=colour, marker="o",
                         linestyle="-" if guard == "raceguard" else "--",
                         label=f"{label}, monthly RANGE (created_at)")
            hashed = [m for m in here if m["layout"] == "hash" and m["guard"] == guard]
            if hashed:
                errorbar(axis, [m["partitions"] for m in hashed], hashed, color=colour, marker="s",
                         linestyle="none", markersize=8, label=f"{label}, HASH (account_id)")
        flat = [m for m in here if m["layout"] == "flat"]
        if flat:
            axis.axhline(flat[0]["median"], color="black", linestyle=":", linewidth=1,
                         label="plain INSERT, not partitioned")
        axis.set_xticks([1, 12, 48, 64])
        axis.set_xlabel("partitions")
        axis.set_ylabel("appends per second (8 clients, 1,000 accounts)")
        axis.set_title(DURABILITY_TITLES.get(setting, setting), fontsize=10)
    figure.suptitle("running_balance on partitioned ledgers:\nsingle-row appends")
    history = rows[0].get("history")
    finish(figure, axes, f"{history} entries of history per account.", results, path)
    return True


TRANSFER_STYLES = [
    ("raceguard", "running_balance", dict(color="tab:blue", marker="o", linestyle="-")),
    ("head_row", "head-row (accounts FOR UPDATE, UPDATE balances)", dict(color="tab:orange", marker="s",
                                                                        linestyle="-")),
    ("pgledger", "pgledger-style", dict(color="tab:green", marker="^", linestyle="-")),
    ("plain", "plain inserts (no balance)", dict(color="tab:grey", marker=".", linestyle=":")),
    ("raceguard_statements", "running_balance, separate statements", dict(color="tab:blue", marker="o",
                                                                          markerfacecolor="white",
                                                                          linestyle="none", markersize=8)),
    ("head_row_statements", "head-row, separate statements", dict(color="tab:orange", marker="s",
                                                                  markerfacecolor="white", linestyle="none",
                                                                  markersize=8)),
]


def plot_transfers(results, path):
    rows = measurements(results, "transfers")
    if not rows:
        return False
    settings = settings_measured(rows)
    figure, axes = panels(len(settings))
    for axis, setting in zip(axes, settings):
        here = [m for m in rows if m["durability"] == setting]
        for side, label, style in TRANSFER_STYLES:
            points = sorted((m for m in here if m["side"] == side), key=lambda m: m["accounts"])
            if points:
                errorbar(axis, [m["accounts"] for m in points], points, label=label, **style)
        axis.set_xscale("log")
        accounts = sorted({m["accounts"] for m in here})
        axis.set_xticks(accounts)
        axis.set_xticklabels([f"{n:,}" for n in accounts])
        axis.set_xlabel("accounts the transfers are spread over")
        axis.set_ylabel("transfers per second (8 clients)")
        axis.set_title(DURABILITY_TITLES.get(setting, setting), fontsize=10)
    figure.suptitle("Double-entry transfers:\na transfers row, a debit and a credit entry per transaction")
    finish(figure, axes, "One function call per transfer unless marked separate statements.", results, path)
    return True


def main(argv):
    results_path = argv[0] if argv else RESULTS
    output = argv[1] if len(argv) > 1 else OUTPUT
    with open(results_path) as results_file:
        results = json.load(results_file)
    os.makedirs(output, exist_ok=True)
    for name, plot in (("partitioned.svg", plot_partitioned), ("transfers.svg", plot_transfers)):
        if not plot(results, os.path.join(output, name)):
            print(f"{name}: not drawn, the run did not measure its case")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
