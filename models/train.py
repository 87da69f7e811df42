"""Trains ShadowNet's instance forecaster and exports it to ONNX with its contract.

An LSTM reads a window of an application's recent steps (instances, load, deploys logged, time of day
and week, and the level the window is at) and predicts, for several quantiles, the most instances the application will run during the next
`horizon` steps: what must be prepared now so that the creates in that time find their address.
Trained with the pinball (quantile) loss on the NAB AWS CloudWatch traces (first 70% of each; the
rest is held out) and on generated scenarios (diurnal, weekly, flash crowds, deploy waves, rolling
deploys whose log line comes a step before the surge of new instances).

Run with Debian's python3-torch and python3-onnx: models/train.sh (which installs them) or
/usr/bin/python3 models/train.py [--seconds N] [--out models/shadownet-lstm.onnx] [--from misses.jsonl].
"""

import argparse
import calendar
import csv
import glob
import json
import math
import os
import random
import time

import numpy as np
import onnx
import torch
from torch import nn

FEATURES = ["instances", "load", "hour_sin", "hour_cos", "dow_sin", "dow_cos", "deploys", "log_scale"]
SCALED = ["instances", "load"]  # divided by the window's scale; time is in [-1, 1]; deploys is ln(1 + count); log_scale is ln(scale)
WINDOW = 36                     # 3 hours of 5-minute steps
STEP_SECONDS = 300
HORIZON = 1                     # the next 5 minutes: the planner runs every step, so a reservation only has to last until the next plan
QUANTILES = [0.5, 0.9, 0.99, 0.999]  # 0.999 for budgets that aim at 95% hits and more
PEAK_INSTANCES = 100
TRAIN_FRACTION = 0.7


def nab_series(folder):
    """Each NAB trace as (name, epoch seconds array, load array)."""
    series = []
    for path in sorted(glob.glob(os.path.join(folder, "*.csv"))):
        times, values = [], []
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                stamp = time.strptime(row["timestamp"], "%Y-%m-%d %H:%M:%S")
                times.append(calendar.timegm(stamp))  # the traces' times are UTC
                values.append(float(row["value"]))
        series.append((os.path.basename(path)[:-4], np.array(times), np.array(values)))
    return series


def instances_of(load, peak=PEAK_INSTANCES):
    """The replay contract of DESIGN.md: instances = ceil(load / capacity), capacity so the peak is `peak`."""
    top = max(float(np.max(load)), 1e-9)
    capacity = top / peak
    return np.maximum(1, np.ceil(load / capacity - 1e-9)), load / capacity


def features_of(times, instances, fractional, deploys=None):
    """One row per step in FEATURES order, before scaling; deploys: the deploy events logged in each step (none: 0)."""
    hours = (times % 86400) / 3600.0
    days = ((times // 86400) + 3) % 7  # 1970-01-01 was a Thursday: 0 = Monday
    deploys = np.zeros(len(times)) if deploys is None else deploys
    columns = [
        instances,
        fractional,
        np.sin(2 * math.pi * hours / 24), np.cos(2 * math.pi * hours / 24),
        np.sin(2 * math.pi * days / 7), np.cos(2 * math.pi * days / 7),
        np.log1p(np.maximum(deploys, 0)),
    ]
    if "log_scale" in FEATURES:
        columns.append(np.zeros(len(times)))  # filled per window by windows(): it depends on the window's scale
    return np.stack(columns, axis=1).astype(np.float32)


def rolling_deploys(rng, steps=4032, start=1_400_000_000):
    """A diurnal service deployed every 6 to 30 hours: the deploy is logged one step before a rolling
    update starts new instances beside the old ones (a surge of 25% to 50% for 2 to 4 steps). Without
    the log line the surge is a surprise; with it, it is announced. Returns times, load, instances,
    deploys."""
    times = start + STEP_SECONDS * np.arange(steps, dtype=np.float64)
    hours = (times % 86400) / 3600.0
    load = np.maximum(0.5 + 0.4 * np.sin(2 * math.pi * (hours - 9) / 24) + rng.normal(0, 0.03, steps), 0.01)
    instances, fractional = instances_of(load)
    deploys = np.zeros(steps)
    at = int(rng.integers(12, 72))
    while at < steps - 6:
        deploys[at] += 1
        surge, length = rng.uniform(0.25, 0.5), int(rng.integers(2, 5))
        instances[at + 1:at + 1 + length] = np.ceil(instances[at + 1:at + 1 + length] * (1 + surge))
        at += int(rng.integers(72, 360))
    return times, fractional, instances, deploys


def synthetic(rng, steps=4032, start=1_400_000_000):
    """Generated load shapes the traces lack, each scaled to PEAK_INSTANCES at its peak."""
    times = start + STEP_SECONDS * np.arange(steps, dtype=np.float64)
    hours = (times % 86400) / 3600.0
    days = ((times // 86400) + 3) % 7
    shapes = []
    base = 0.5 + 0.4 * np.sin(2 * math.pi * (hours - 9) / 24)
    shapes.append(("diurnal", base + rng.normal(0, 0.03, steps)))
    weekly = base * np.where(days >= 5, 0.45, 1.0)
    shapes.append(("weekly", weekly + rng.normal(0, 0.03, steps)))
    crowd = base.copy()
    for _ in range(8):
        at = rng.integers(WINDOW, steps - 50)
        crowd[at:at + 40] += rng.uniform(0.5, 1.5) * np.exp(-np.arange(min(40, steps - at)) / rng.uniform(4, 15))
    shapes.append(("flash-crowds", crowd + rng.normal(0, 0.03, steps)))
    waves = np.full(steps, 0.3)
    level = 0.3
    for at in sorted(rng.integers(0, steps, 14)):
        level = float(np.clip(level + rng.uniform(-0.3, 0.4), 0.1, 1.0))
        waves[at:] = level
    shapes.append(("deploy-waves", waves + rng.normal(0, 0.02, steps)))
    return [(name, times, np.maximum(load, 0.01)) for name, load in shapes]


def windows(feature_rows, instances, begin, end):
    """(inputs scaled per window, targets scaled alike) for every window whose horizon ends before `end`."""
    xs, ys = [], []
    level = FEATURES.index("log_scale") if "log_scale" in FEATURES else None
    for t in range(max(begin, WINDOW), end - HORIZON):
        window = feature_rows[t - WINDOW:t].copy()
        scale = max(1.0, float(window[:, 0].max()))
        window[:, 0:2] /= scale
        if level is not None:
            window[:, level] = math.log(scale)
        xs.append(window)
        ys.append(instances[t:t + HORIZON].max() / scale)
    return np.array(xs, dtype=np.float32), np.array(ys, dtype=np.float32)


def miss_windows(path):
    """Training windows from exported misses: the WINDOW steps before the last HORIZON ones, and the most
    instances in those HORIZON steps (the peak the plan missed). A window's samples need 'instances'
    (and optionally 'load'); they are put on the 5-minute grid, the latest sample of a step winning."""
    xs, ys, skipped = [], [], 0
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            miss = json.loads(line)
            samples = ((miss.get("window") or {}).get("samples")) or []
            steps, deploys = {}, {}
            for sample in samples:
                if "timeMs" in sample and "deploys" in sample:
                    step = int(sample["timeMs"] // 1000 // STEP_SECONDS)
                    deploys[step] = deploys.get(step, 0.0) + float(sample["deploys"])  # events add up within a step
                if "instances" in sample and "timeMs" in sample:
                    step = int(sample["timeMs"] // 1000 // STEP_SECONDS)
                    steps[step] = (float(sample["instances"]), float(sample.get("load", sample["instances"])))
            ordered = sorted(steps)
            if len(ordered) < WINDOW + HORIZON or ordered[-1] - ordered[0] + 1 != len(ordered):
                skipped += 1
                continue
            ordered = ordered[-(WINDOW + HORIZON):]
            times = np.array([step * STEP_SECONDS for step in ordered], dtype=np.float64)
            instances = np.array([steps[step][0] for step in ordered])
            load = np.array([steps[step][1] for step in ordered])
            rows = features_of(times, instances, load, np.array([deploys.get(step, 0.0) for step in ordered]))
            x, y = windows(rows, instances, WINDOW, WINDOW + HORIZON + 1)
            xs.append(x)
            ys.append(y)
    if not xs:
        return np.zeros((0, WINDOW, len(FEATURES)), dtype=np.float32), np.zeros((0,), dtype=np.float32), skipped
    return np.concatenate(xs), np.concatenate(ys), skipped


class Forecaster(nn.Module):
    """LSTM over the window; quantiles kept in order by adding non-negative steps to the median."""

    def __init__(self, hidden=24, steps_per_cell=1):
        super().__init__()
        self.steps_per_cell = steps_per_cell
        self.lstm = nn.LSTM(len(FEATURES) * steps_per_cell, hidden, batch_first=True)
        self.head = nn.Linear(hidden, len(QUANTILES))

    def forward(self, features):
        # [batch, window, features] read as [batch, window / k, k x features]: the same memory, so the
        # contract's input is unchanged, while the recurrence (most of the cost) runs window / k times.
        cells = features.reshape(-1, WINDOW // self.steps_per_cell, len(FEATURES) * self.steps_per_cell)
        out, _ = self.lstm(cells)
        raw = self.head(out[:, -1, :])
        steps = nn.functional.softplus(raw[:, 1:])
        return torch.cat([raw[:, :1], raw[:, :1] + torch.cumsum(steps, dim=1)], dim=1)


def pinball(predicted, target):
    q = torch.tensor(QUANTILES).unsqueeze(0)
    error = target.unsqueeze(1) - predicted
    return torch.mean(torch.maximum(q * error, (q - 1) * error))


def main():
    global WINDOW, HORIZON, QUANTILES, FEATURES
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "traces", "nab"))
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "shadownet-lstm.onnx"))
    parser.add_argument("--seconds", type=float, default=600, help="training time budget on the CPU")
    parser.add_argument("--window", type=int, default=WINDOW, help="steps of history per window (5-minute steps)")
    parser.add_argument("--quantiles", default=",".join(map(str, QUANTILES)), help="comma-separated, increasing (e.g. 0.5,0.9,0.99,0.999)")
    parser.add_argument("--horizon", type=int, default=HORIZON, help="steps ahead whose most instances are forecast")
    parser.add_argument("--hidden", type=int, default=24, help="LSTM hidden units (inference cost grows with their square; 24 since stop 18)")
    parser.add_argument("--steps-per-cell", type=int, default=1, help="consecutive steps the LSTM reads per recurrence (divides --window)")
    parser.add_argument("--seed", type=int, default=11, help="11 trained the committed model (7 gave a worse one with 24 units)")
    parser.add_argument("--no-scale-feature", action="store_true",
                        help="leave out 'log_scale' (ln of the window's scale: the level the scaled inputs are relative to), as models before 2026-12-02 did")
    parser.add_argument("--from", dest="misses", help="JSON lines of misses (shadownet export-training-data): their windows are added to training, weighted")
    parser.add_argument("--miss-weight", type=int, default=10, help="how many times each miss window counts")
    args = parser.parse_args()
    WINDOW = args.window
    if args.no_scale_feature:
        FEATURES.remove("log_scale")
    HORIZON = args.horizon
    QUANTILES = [float(q) for q in args.quantiles.split(",")]

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    torch.set_num_threads(2)

    train_x, train_y, held_out = [], [], []
    for name, times, load in nab_series(args.traces):
        instances, fractional = instances_of(load)
        rows = features_of(times, instances, fractional)
        cut = int(len(load) * TRAIN_FRACTION)
        x, y = windows(rows, instances, 0, cut)
        train_x.append(x)
        train_y.append(y)
        held_out.append((name, windows(rows, instances, cut, len(load))))
    for name, times, load in synthetic(rng):
        instances, fractional = instances_of(load)
        x, y = windows(features_of(times, instances, fractional), instances, 0, len(load))
        train_x.append(x)
        train_y.append(y)
    for _ in range(2):
        times, fractional, instances, deploys = rolling_deploys(rng)
        x, y = windows(features_of(times, instances, fractional, deploys), instances, 0, len(times))
        train_x.append(x)
        train_y.append(y)
    # A rolling-deploy series it does not train on, to measure what the deploy log line is worth.
    times, fractional, instances, deploys = rolling_deploys(np.random.default_rng(args.seed + 1000))
    deploy_rows = features_of(times, instances, fractional, deploys)
    deploy_held_out = windows(deploy_rows, instances, 0, len(times))
    blind_rows = deploy_rows.copy()
    blind_rows[:, FEATURES.index("deploys")] = 0
    deploy_blind = windows(blind_rows, instances, 0, len(times))
    # The windows that end with a deploy logged: the surge is in their horizon.
    announced = deploy_held_out[0][:, -1, FEATURES.index("deploys")] > 0
    deploy_windows = (deploy_held_out[0][announced], deploy_held_out[1][announced])
    deploy_windows_blind = (deploy_blind[0][announced], deploy_blind[1][announced])
    if args.misses:
        mx, my, skipped = miss_windows(args.misses)
        print(f"misses: {len(mx)} windows from {args.misses} ({skipped} too short), each counted {args.miss_weight} times")
        for _ in range(args.miss_weight if len(mx) else 0):
            train_x.append(mx)
            train_y.append(my)
    x = torch.from_numpy(np.concatenate(train_x))
    y = torch.from_numpy(np.concatenate(train_y))
    print(f"training windows: {len(x)}; held out: {sum(len(h[1][0]) for h in held_out)}")

    if WINDOW % args.steps_per_cell:
        parser.error(f"--steps-per-cell {args.steps_per_cell} does not divide --window {WINDOW}")
    model = Forecaster(args.hidden, args.steps_per_cell)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    started = time.time()
    epoch = 0
    while time.time() - started < args.seconds:
        order = torch.randperm(len(x))
        total = 0.0
        for i in range(0, len(x), 256):
            batch = order[i:i + 256]
            loss = pinball(model(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss) * len(batch)
        epoch += 1
        print(f"epoch {epoch}: pinball {total / len(x):.5f} ({time.time() - started:.0f} s)")

    model.eval()
    report = {}
    with torch.no_grad():
        for name, (hx, hy) in held_out + [("rolling-deploys (synthetic)", deploy_held_out), ("rolling-deploys, deploys hidden", deploy_blind),
                                          ("rolling-deploys, windows ending at a deploy", deploy_windows),
                                          ("rolling-deploys, windows ending at a deploy, deploys hidden", deploy_windows_blind)]:
            predicted = model(torch.from_numpy(hx)).numpy()
            covered = [float(np.mean(hy <= predicted[:, i] + 1e-6)) for i in range(len(QUANTILES))]
            report[name] = {"windows": int(len(hx)), "coverage": dict(zip(map(str, QUANTILES), covered)),
                            "pinball": float(pinball(torch.from_numpy(predicted), torch.from_numpy(hy)))}
    print(json.dumps(report, indent=1))

    contract = {
        "version": 1,
        "features": FEATURES,
        "window": WINDOW,
        "step_seconds": STEP_SECONDS,
        "horizon_steps": HORIZON,
        "quantiles": QUANTILES,
        "normalisation": {
            "scale": "max(1, max of 'instances' over the window)",
            "scaled_features": SCALED,
            "load": "load / capacity, capacity = the load one instance serves",
            "time": "hour and day of week (0 = Monday) of each step's start, UTC, as sin/cos",
            "deploys": "ln(1 + deploy events logged in the step)",
            **({"log_scale": "ln(scale), the same in every step of the window"} if "log_scale" in FEATURES else {}),
        },
        "output": "per quantile, the most instances during the next horizon_steps steps, divided by scale",
        "input": "features: float32 [batch, window, features]",
        "trained": {"seconds": round(time.time() - started), "epochs": epoch, "seed": args.seed,
                    "data": "NAB AWS CloudWatch traces (first 70% of each, MIT) + generated diurnal/weekly/flash-crowd/deploy-wave/rolling-deploy"},
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    dummy = x[:2]
    torch.onnx.export(model, dummy, args.out, input_names=["features"], output_names=["quantiles"],
                      dynamic_axes={"features": {0: "batch"}, "quantiles": {0: "batch"}}, opset_version=14)
    exported = onnx.load(args.out)
    entry = exported.metadata_props.add()
    entry.key, entry.value = "shadownet.contract", json.dumps(contract)
    onnx.checker.check_model(exported)
    onnx.save(exported, args.out)

    # A small test vector next to the model: C# inference must reproduce these outputs (1e-4).
    # Twelve NAB windows and four around deploys, so that the deploys column is exercised too.
    logged = np.nonzero(deploy_held_out[0][:, -1, FEATURES.index("deploys")])[0][:4]
    sample = torch.from_numpy(np.concatenate([np.concatenate([h[1][0][:: max(1, len(h[1][0]) // 2)][:2] for h in held_out])[:12],
                                              deploy_held_out[0][logged]]))
    with torch.no_grad():
        expected = model(sample).numpy()
    with open(args.out[:-5] + ".testvector.json", "w") as handle:
        json.dump({"features": sample.numpy().tolist(), "quantiles": expected.tolist()}, handle)
    with open(args.out[:-5] + ".evaluation.json", "w") as handle:
        json.dump(report, handle, indent=1)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes), its test vector and held-out evaluation")


if __name__ == "__main__":
    main()
