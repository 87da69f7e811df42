"""Hit rate and waste per NAB trace: lstm beside seasonal-naive, an equal-waste static warm pool and
reactive, each through `shadownet replay` (the real planner, allocator and route manager).

Usage: python3 models/evaluate.py [--confidence 0.99] [--peak-instances 100] [--measure-from 0.7] [--model FILE] [--jobs N]
       [--shrink-cooldown MINUTES] [--shrink-hysteresis N] [--minimum-reserve N]
(prints a Markdown table; traces are replayed N at a time, each replay being deterministic)
"""
import argparse
import concurrent.futures
import glob
import json
import os
import subprocess

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CLI = os.path.join(ROOT, "src", "ShadowNet.Cli", "bin", "Release", "net10.0", "shadownet.dll")


def replay(trace, policy, args):
    out = subprocess.run(["dotnet", CLI, "replay", "--trace", trace, "--policy", policy,
                          "--peak-instances", str(args.peak_instances), "--confidence", str(args.confidence),
                          "--measure-from", str(args.measure_from)]
                         + (["--model", args.model] if args.model and policy == "lstm" else [])
                         + (["--shrink-cooldown", str(args.shrink_cooldown)] if args.shrink_cooldown is not None else [])
                         + (["--shrink-hysteresis", str(args.shrink_hysteresis)] if args.shrink_hysteresis is not None else [])
                         + (["--minimum-reserve", str(args.minimum_reserve)] if args.minimum_reserve and policy == "lstm" else []),
                         check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", default=os.path.join(ROOT, "..", "shared", "data", "traces", "nab"))
    parser.add_argument("--confidence", type=float, default=0.99)
    parser.add_argument("--peak-instances", type=int, default=100)
    parser.add_argument("--measure-from", type=float, default=0.0, help="0.7: count only the held-out last 30%% of each trace")
    parser.add_argument("--model", help="ONNX model for lstm (default: models/shadownet-lstm.onnx)")
    parser.add_argument("--shrink-cooldown", type=float, help="planner: minutes after growth before shrinking (default: the daemon's, 5)")
    parser.add_argument("--shrink-hysteresis", type=int, help="planner: excess reservations kept without shrinking (default: the daemon's, 2)")
    parser.add_argument("--minimum-reserve", type=int, default=0, help="lstm's planner: reservations kept whatever the forecast (a warm floor; the equal-waste pool counts them)")
    parser.add_argument("--jobs", type=int, default=3, help="traces replayed at once (a replay waits on wake-ups more than it computes)")
    args = parser.parse_args()
    subprocess.run(["dotnet", "build", "-c", "Release", os.path.join(ROOT, "src", "ShadowNet.Cli"), "-v", "q", "-nologo"], check=True,
                   stdout=subprocess.DEVNULL)

    planner = "" if args.shrink_cooldown is None and args.shrink_hysteresis is None else f", planner shrink cool-down {args.shrink_cooldown} min, hysteresis {args.shrink_hysteresis}"
    planner += f", lstm's minimum reserve {args.minimum_reserve}" if args.minimum_reserve else ""
    print(f"confidence {args.confidence}, peak {args.peak_instances} instances, counted from {args.measure_from:.0%} of each trace{planner}; hit rate % (waste ratio)\n")
    print("| trace | creates | lstm | seasonal-naive | ewma | static-warm:K (K) | reactive | lstm beats equal-waste warm pool |")
    print("|---|---|---|---|---|---|---|---|")
    totals = {"lstm": [0, 0], "seasonal-naive": [0, 0], "ewma": [0, 0], "static": [0, 0], "reactive": [0, 0]}
    wins = 0
    traces = sorted(glob.glob(os.path.join(args.traces, "*.csv")))
    def evaluate(trace):
        lstm = replay(trace, "lstm", args)
        k = max(0, round(lstm["MeanReservedUnused"]))  # a fixed pool of K keeps K reserved: the same waste
        others = {policy: replay(trace, policy, args) for policy in ("seasonal-naive", "ewma", f"static-warm:{k}", "reactive")}
        return lstm, others["seasonal-naive"], others["ewma"], others[f"static-warm:{k}"], others["reactive"], k

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(evaluate, traces))
    for trace, (lstm, naive, ewma, warm, reactive, k) in zip(traces, results):
        for key, result in (("lstm", lstm), ("seasonal-naive", naive), ("ewma", ewma), ("static", warm), ("reactive", reactive)):
            totals[key][0] += result["Hits"]
            totals[key][1] += result["Creates"]
        better = lstm["HitRate"] > warm["HitRate"]
        wins += better
        cell = lambda r: f"{100 * r['HitRate']:.1f} ({r['WasteRatio']:.2f})"
        print(f"| {os.path.basename(trace)[:-4]} | {lstm['Creates']} | {cell(lstm)} | {cell(naive)} | {cell(ewma)} | {cell(warm)} ({k}) | "
              f"{cell(reactive)} | {'yes' if better else 'no'} |")
    overall = {key: 100 * hits / max(1, creates) for key, (hits, creates) in totals.items()}
    print(f"| **all** | {totals['lstm'][1]} | {overall['lstm']:.1f} | {overall['seasonal-naive']:.1f} | {overall['ewma']:.1f} | {overall['static']:.1f} | "
          f"{overall['reactive']:.1f} | {wins} of {len(traces)} |")


if __name__ == "__main__":
    main()
