"""Run a named benchmark protocol (settings in benchmarks/protocols/NAME.yaml) and report it.

    python benchmarks/protocol.py quick                        # every run of the protocol, over its seeds
    python benchmarks/protocol.py quick --only hinton bp-mlp --seeds 0
    python benchmarks/protocol.py speed --device cuda          # `ffvision bench` entries
    python benchmarks/protocol.py quick --report benchmarks/results/quick-*.jsonl   # mean ± sd table

Training protocols train each run through `ffvision.train.run.train` (the epoch and prediction strategy chosen
on validation, the test set evaluated once) and append one JSON line per run and seed to
benchmarks/results/PROTOCOL-MACHINE-DATE.jsonl (or --out). The speed protocol runs `ffvision bench` in fresh
processes and appends one line per entry.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
PROTOCOLS = HERE / "protocols"


def load(name: str) -> dict:
    """The protocol's YAML settings."""
    path = PROTOCOLS / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROTOCOLS.glob("*.yaml")))
        sys.exit(f"error: unknown protocol '{name}' (known: {known})")
    return yaml.safe_load(path.read_text())


def machine(device: object = "cpu") -> str:
    """Where a record was measured (ffvision.train.devices.device_name)."""
    from ffvision.train.devices import device_name

    return device_name(device)


def machine_slug(device: str) -> str:
    """A short file-name form of the machine: cpu family/model or the GPU's name."""
    text = machine(device).split(",")[0].lower()
    return "".join(c if c.isalnum() else "-" for c in text).strip("-").replace("--", "-")[:40]


def default_out(name: str, device: str) -> Path:
    """benchmarks/results/PROTOCOL-MACHINE-DATE.jsonl."""
    return HERE / "results" / f"{name}-{machine_slug(device)}-{date.today().isoformat()}.jsonl"


def emit(record: dict, out: str | Path | None) -> None:
    """Print one record as a JSON line and append it to `out` (its folder made) when given."""
    line = json.dumps(record)
    print(line, flush=True)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a") as fh:
            fh.write(line + "\n")


def commit() -> str:
    """The short commit of the working tree (with '+' when it has uncommitted changes to tracked files)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE)
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "ffvision"], cwd=HERE).returncode
    return head.stdout.strip() + ("+" if dirty else "")


def run_training(name: str, spec: dict, args: argparse.Namespace, out: Path) -> None:
    """Train every (run, budget, seed) of a training protocol; one JSON line each."""
    from ffvision.cli import RECIPES
    from ffvision.config import TrainConfig, apply_overrides, load_recipe
    from ffvision.train.heap import keep_freed_memory
    from ffvision.train.run import train

    keep_freed_memory()  # the C heap as `ffvision train` sets it (train/heap.py): a run measured as users run it

    runs = spec["runs"]
    unknown = [r for r in args.only or [] if r not in runs]
    if unknown:
        sys.exit(f"error: protocol {name} has no run {', '.join(unknown)} (runs: {', '.join(runs)})")
    folders = {}
    for key, f in spec.get("folders", {}).items():  # FashionMNIST images written once as PNG folders
        from fmnist_folder import write_fmnist_folder

        root = Path(f.get("root", Path(args.runs_dir) / "folders" / key))
        if not (root / "train").is_dir() and any(runs[r].get("folder") == key for r in args.only or runs):
            write_fmnist_folder(root, f["train_subset"], f.get("val_size", 10000), (f.get("val"), f.get("test")),
                                f.get("image_size", 28))
        folders[key] = str(root)
    done = recorded(name, out) if args.resume else set()
    todo = jobs(spec, args, done)
    if spec.get("fresh_process") and len(todo) > 1:
        each_in_its_process(name, todo, args, out)
        return
    for run, budget, seed in todo:
        settings = {**spec.get("common", {}), **budget,
                    **{k: v for k, v in runs[run].items() if k not in ("budgets", "beside")}}
        if "folder" in settings:
            settings.update(dataset="imagefolder", data_dir=folders[settings.pop("folder")])
        cfg = TrainConfig()
        if "recipe" in settings:
            cfg = apply_overrides(cfg, load_recipe(RECIPES / f"{settings.pop('recipe')}.yaml"))
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = Path(args.runs_dir) / name / f"{run}-s{seed}-{stamp}"
        cfg = apply_overrides(cfg, {**settings, "seed": seed, "device": args.device, "out": str(run_dir)})
        t = time.time()
        s = train(cfg, show_progress=False)
        command = f"python benchmarks/protocol.py {name} --only {run} --seeds {seed}"
        if budget:
            command += " --budgets " + ",".join(f"{k}={v}" for k, v in budget.items())
        if args.device != "cpu":
            command += f" --device {args.device}"
        emit({"protocol": name, "name": run, "seed": seed, "budget": budget, "machine": machine(args.device),
              "date": date.today().isoformat(), "commit": commit(), "command": command,
              "run_dir": str(run_dir), "wall_seconds": round(time.time() - t, 1),
              **{k: s.get(k) for k in ("method", "test_accuracy", "strategy", "test_accuracy_by_strategy",
                                       "val_accuracy_best", "best_epoch", "train_images_per_second",
                                       "train_seconds", "trainable_parameters", "early_exit", "images_seen",
                                       "epochs_reached", "val_seconds", "test_seconds")},
              **(resident_by_epoch(run_dir) if spec.get("report") == "soak" else {}),
              **(deployed(run_dir, s["strategy"]) if spec.get("report") == "deploy" else {}),
              "config": s["config"]}, out)


def deployed(run_dir: Path, strategy: str) -> dict:
    """Inference cost of every strategy of a trained run, and its reported strategy exported to ONNX (float32 and
    int8) and evaluated from the file."""
    import torch

    from ffvision import deploy
    from ffvision.train.run import checkpoint_data, evaluate_exported

    method, cfg, data = checkpoint_data(run_dir, device="cpu")
    files = {}
    for quantize in (None, "int8"):
        path = run_dir / f"{strategy}{'-int8' if quantize else ''}.onnx"
        deploy.export(run_dir, path, "onnx", strategy, quantize=quantize)
        r = evaluate_exported(path)
        files[quantize or "float32"] = {"test_accuracy": r["test_accuracy"], **r["inference"][strategy]}
    return {"inference": deploy.method_inference_stats(method, deploy.first_images(data.test, torch.device("cpu"))),
            "strategy_info": method.strategy_info(), "exported": files}


def deploy_report(paths: list[Path], spec: dict) -> list[str]:
    """Markdown rows per run and strategy: test accuracy, parameters, latency, throughput and peak memory; then the
    reported strategy's ONNX files."""
    out = ["| run | strategy | test accuracy | parameters | latency, batch 1 (ms) | img/s, batch 64 | peak MiB, "
           "batch 1 | peak MiB, batch 64 | machine | commit | date |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    files = ["| run | reported strategy as ONNX | test accuracy | file MiB | latency, batch 1 (ms) | img/s, batch 64 |",
             "|---|---|---|---|---|---|"]
    for name, r in latest_records(paths).items():
        acc = dict(r["test_accuracy_by_strategy"])
        acc.update({f"exit@{e['threshold']:g}": e["accuracy"] for e in r.get("early_exit") or []})
        for key, m in r["inference"].items():
            mark = " (reported)" if key == r["strategy"] else ""
            out.append(f"| {name} | {key}{mark} | {100 * acc[key]:.2f} | {m['parameters']:,} | {m['latency_ms']:.2f} | "
                       f"{m['images_per_second']:,.0f} | {m['peak_bytes_batch1'] / 2**20:.1f} | "
                       f"{m['peak_bytes_batch64'] / 2**20:.1f} | {r['machine']} | {r['commit']} | {r['date']} |")
        for kind, f in r["exported"].items():
            files.append(f"| {name} | {r['strategy']}, {kind} | {100 * f['test_accuracy']:.2f} | "
                         f"{f['file_bytes'] / 2**20:.2f} | {f['latency_ms']:.2f} | {f['images_per_second']:,.0f} |")
    return out + [""] + files


def jobs(spec: dict, args: argparse.Namespace, done: set[tuple[str, str, int]]) -> list[tuple[str, dict, int]]:
    """The (run, budget, seed) of a training protocol still to do, by budget, then seed, then run: a method and
    its backprop run, side by side, train the same budget and seed at the same time. A budget's own `seeds` (a
    key of its own) replace the protocol's; --seeds replaces both."""
    runs = spec["runs"]
    todo = []
    for run in args.only or list(runs):
        images = spec.get("folders", {}).get(runs[run].get("folder"), {}).get("train_subset")
        swept = images and ("budgets" in spec or "budgets" in runs[run])  # a sweep whose rule knows its data
        for i, budget in enumerate(runs[run].get("budgets", spec.get("budgets", [{}]))):
            budget = dict(budget)
            own = budget.pop("seeds", spec.get("seeds", [0]))
            seeds = own if args.seeds is None else args.seeds
            if args.budgets is not None and budget not in args.budgets:
                continue
            # a run with no budget flags under today's rule: done where the setting it would choose is recorded
            key = budget_key(rule_for(images) if swept and not budget else budget)
            for seed in seeds:
                if (run, key, seed) in done:
                    logging.info("%s %s seed %d: already recorded on this machine, skipped", run, budget or "", seed)
                else:
                    todo.append((i, seed, run, budget))
    order = {r: k for k, r in enumerate(args.only or runs)}
    return [(run, budget, seed) for _, seed, run, budget in sorted(todo, key=lambda j: (j[0], j[1], order[j[2]]))]


def each_in_its_process(name: str, todo: list[tuple[str, dict, int]], args: argparse.Namespace, out: Path) -> None:
    """Each (run, budget, seed) in a fresh `protocol.py NAME --only RUN --budgets B --seeds SEED`, --parallel at a
    time (a run's memory and threads are then its own)."""
    waiting, running = list(todo), []
    while waiting or running:
        while waiting and len(running) < args.parallel:
            run, budget, seed = waiting.pop(0)
            b = ",".join(f"{k}={v}" for k, v in budget.items()) or "rule"
            cmd = [sys.executable, __file__, name, "--only", run, "--budgets", b, "--seeds", str(seed), "--out",
                   str(out), "--device", args.device, "--runs-dir", args.runs_dir]
            logging.info("starting %s", shlex.join(cmd))
            running.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
        time.sleep(1)
        for p in [p for p in running if p.poll() is not None]:
            running.remove(p)
            if p.returncode:
                logging.warning("%s ended with status %d", shlex.join(p.args), p.returncode)


def resident_by_epoch(run_dir: Path) -> dict:
    """The run's resident memory (MiB) after each epoch, from its metrics.jsonl."""
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {f"{k}_by_epoch": [r.get(k) for r in records] for k in ("resident_mib", "heap_in_use_mib")}


def run_bench(name: str, spec: dict, args: argparse.Namespace, out: Path) -> None:
    """Run each `ffvision bench` entry of the speed protocol in a fresh process; one JSON line each."""
    entries = spec["bench"]
    for entry in args.only or list(entries):
        if entry not in entries:
            sys.exit(f"error: protocol {name} has no entry {entry} (entries: {', '.join(entries)})")
        tmp = Path(args.runs_dir) / name / f"{entry}.json"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "ffvision", "bench", *shlex.split(entries[entry]), "--device", args.device,
               "--json", str(tmp)]
        subprocess.run(cmd, check=True)
        emit({"protocol": name, "name": entry, "machine": machine(args.device), "date": date.today().isoformat(),
              "commit": commit(), "command": f"ffvision bench {entries[entry]} --device {args.device}",
              **json.loads(tmp.read_text())}, out)


def budget_key(budget: dict | None) -> str:
    """A budget (the settings a sweep varies) as one comparable string."""
    return json.dumps(budget or {}, sort_keys=True)


def parse_pairs(pairs: list[str]) -> dict[str, object]:
    """'key=value' strings -> overrides, values read as YAML except YAML 1.1's off/on/no/yes, kept as words."""
    out = {}
    for pair in pairs:
        key, raw = pair.split("=", 1)
        value = yaml.safe_load(raw)
        out[key] = raw if isinstance(value, bool) and raw.lower() not in ("true", "false") else value
    return out


def parse_budget(text: str) -> dict:
    """A budget given on the command line: 'rule' is {} (no budget flags), else k=v pairs (`parse_pairs`)."""
    if text == "rule":
        return {}
    try:
        return parse_pairs(text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a budget is 'rule' or k=v,k=v, got {text!r}") from None


def recorded(name: str, out: Path) -> set[tuple[str, str, int]]:
    """(run, budget, seed) of the records of protocol `name` taken on this machine: in `out` and in the other
    records of the protocol beside it."""
    here = machine()
    done = set()
    for path in {out, *out.parent.glob(f"{name}-*.jsonl")}:
        for line in path.read_text().splitlines() if path.exists() else []:
            r = json.loads(line)
            if r.get("machine") == here:
                done.add((r["name"], budget_key(r.get("budget")), r["seed"]))
                if not r.get("budget") and "config" in r:  # a run of the rule is a run of the setting it chose
                    done.add((r["name"], budget_key(chosen(r["config"])), r["seed"]))
    return done


def chosen(config: dict) -> dict:
    """The settings a sweep varies, as a run's config has them."""
    return {"batch_size": config["batch_size"], "epochs": config["epochs"]}


def mean_sd(values: list[float]) -> str:
    """'m ± sd' in percent (sd over seeds; none with one seed)."""
    m = 100 * statistics.mean(values)
    return f"{m:.2f} ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else f"{m:.2f}"


def report(paths: list[Path]) -> list[str]:
    """Markdown rows: per run and budget, test accuracy mean ± sd over seeds per strategy, and the command."""
    groups: dict[tuple, dict[int, dict]] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if "test_accuracy_by_strategy" not in r:
                continue
            key = (r["name"], budget_key(r.get("budget")))
            groups.setdefault(key, {})[r["seed"]] = r  # the newest record of each seed
    out = ["| run | budget | seeds | test accuracy by strategy (mean ± sd, %) | reported (chosen on val) | "
           "train img/s | machine | commit | date |", "|---|---|---|---|---|---|---|---|---|"]
    for (run, budget), by_seed in groups.items():
        recs = [by_seed[s] for s in sorted(by_seed)]
        strategies = list(recs[0]["test_accuracy_by_strategy"])
        acc = ", ".join(f"`{k}` {mean_sd([r['test_accuracy_by_strategy'][k] for r in recs])}" for k in strategies)
        ips = statistics.mean(r["train_images_per_second"] for r in recs)
        b = ", ".join(f"{k}={v}" for k, v in json.loads(budget).items()) or "protocol's"
        out.append(f"| {run} | {b} | {','.join(str(s) for s in sorted(by_seed))} | {acc} | "
                   f"{mean_sd([r['test_accuracy'] for r in recs])} | {ips:.0f} | {recs[0]['machine']} | "
                   f"{recs[-1]['commit']} | {recs[-1]['date']} |")
    return out


def rule_for(train_images: int) -> dict:
    """The batch size and epochs a run with no budget flags chooses today for a training set of this size."""
    from ffvision.train.budget import default_batch_size, default_epochs

    return {"batch_size": default_batch_size(train_images), "epochs": default_epochs(train_images)}


def rule_runs(budgets: dict[str, list[dict]], train_images: int | None) -> list[dict]:
    """The records of a run's defaults under today's rule (ffvision/train/budget.py): its runs with no budget flags
    that chose what the rule chooses now, else the swept run of that very setting, else (the rule has changed
    and neither is measured) its runs with no budget flags as recorded."""
    unflagged = budgets.get(budget_key(None), [])
    if train_images is None:
        return unflagged
    rule = rule_for(train_images)
    now = [r for r in unflagged if chosen(r["config"]) == rule]
    return now or budgets.get(budget_key(rule)) or unflagged


def sweep_report(paths: list[Path], spec: dict | None = None) -> list[str]:
    """Markdown rows of a sweep protocol: per run, the run with no budget flags (the defaults chosen from the data)
    against the sweep's best on validation: accuracy, the gap, and the time against the best's."""
    spec = spec or {}
    groups: dict[str, dict[str, list[dict]]] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            r = json.loads(line)
            groups.setdefault(r["name"], {}).setdefault(budget_key(r.get("budget")), []).append(r)
    out = ["| run | defaults chosen | their val % | time (s) | sweep's best (of N settings) | its val % | time (s) | "
           "gap (points) | time ÷ best's | seeds (defaults / best) | machine | commit | date |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def val(recs: list[dict]) -> float:
        return 100 * statistics.mean(r["val_accuracy_best"] for r in recs)

    def wall(recs: list[dict]) -> float:
        return statistics.mean(r["wall_seconds"] for r in recs)

    for run, budgets in groups.items():
        folder = spec.get("folders", {}).get(spec.get("runs", {}).get(run, {}).get("folder"), {})
        mine = rule_runs(budgets, folder.get("train_subset"))
        swept = {b: recs for b, recs in budgets.items() if b != budget_key(None)}
        for r in budgets.get(budget_key(None), []):  # runs of an earlier rule: a swept setting now
            if r not in mine:
                swept.setdefault(budget_key(chosen(r["config"])), []).append(r)
        if not mine or not swept:
            continue
        best = max(swept, key=lambda b: val(swept[b]))
        b = ", ".join(f"{k} {v}" for k, v in json.loads(best).items())
        top = swept[best]
        if val(mine) > val(top):  # the defaults beat every swept setting: they are the best
            b, top = "the defaults", mine
        c = mine[-1]["config"]
        same = " (that swept run)" if mine[-1].get("budget") else ""  # the rule chooses a swept setting
        out.append(f"| {run} | batch {c['batch_size']}, {c['epochs']} epochs{same} | {val(mine):.1f} | "
                   f"{wall(mine):.0f} | {b} (of {len(swept) + (not same)}) | {val(top):.1f} | {wall(top):.0f} | "
                   f"{val(top) - val(mine):+.1f} | {wall(mine) / wall(top):.2f} | {len(mine)} / {len(top)} | "
                   f"{mine[-1]['machine']} | {mine[-1]['commit']} | {mine[-1]['date']} |")
    return out


def soak_report(paths: list[Path], spec: dict) -> list[str]:
    """Markdown rows of the soak protocol: per run, resident memory after the reference epoch and after the last,
    the growth between them (the target: under 2%), and the epoch of the largest resident set."""
    since = spec.get("since_epoch", 5)
    out = [f"| run | epochs | resident after epoch {since} → the last (MiB) | growth | C heap in use after epoch "
           f"{since} → the last (MiB) | growth | test accuracy | machine | commit | date |",
           "|---|---|---|---|---|---|---|---|---|---|"]

    def span(series: list | None) -> tuple[str, str]:
        if not series or series[since - 1] is None:
            return "—", "—"
        ref, last = series[since - 1], series[-1]
        return f"{ref:,.1f} → {last:,.1f}", f"{100 * (last - ref) / ref:+.1f}%"

    for name, r in latest_records(paths).items():
        rss, heap = span(r["resident_mib_by_epoch"]), span(r.get("heap_in_use_mib_by_epoch"))
        out.append(f"| {name} | {len(r['resident_mib_by_epoch'])} | {rss[0]} | {rss[1]} | {heap[0]} | {heap[1]} | "
                   f"{100 * r['test_accuracy']:.2f} | {r['machine']} | {r['commit']} | {r['date']} |")
    return out


def time_report(paths: list[Path], spec: dict) -> list[str]:
    """Markdown rows of the time-to-accuracy protocol: per run and budget, test accuracy (mean ± sd over seeds),
    epochs reached and img/s; then per budget, each local method against its backprop run (`beside`). Draws the
    curves to the protocol's `plot` file."""
    groups: dict[str, dict[float, dict[int, dict]]] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if r.get("budget", {}).get("time_budget"):
                groups.setdefault(r["name"], {}).setdefault(duration(r["budget"]["time_budget"]), {})[r["seed"]] = r
    out = ["| run | budget | seeds | test accuracy (%) | epochs reached | train img/s | machine | commit | date |",
           "|---|---|---|---|---|---|---|---|---|"]
    for run, budgets in groups.items():
        for budget, by_seed in sorted(budgets.items()):
            recs = [by_seed[s] for s in sorted(by_seed)]
            out.append(f"| {run} | {budget / 60:g} min | {','.join(map(str, sorted(by_seed)))} | "
                       f"{mean_sd([r['test_accuracy'] for r in recs])} | "
                       f"{statistics.mean(r['epochs_reached'] for r in recs):.2f} | "
                       f"{statistics.mean(r['train_images_per_second'] for r in recs):.0f} | {recs[0]['machine']} | "
                       f"{recs[-1]['commit']} | {recs[-1]['date']} |")
    out += ["", "| method | beside | budget | method − backprop (points, mean over the seeds both have) | ahead |",
            "|---|---|---|---|---|"]
    for run, budgets in groups.items():
        bp = spec["runs"].get(run, {}).get("beside")
        for budget, by_seed in sorted(budgets.items()):
            other = groups.get(bp, {}).get(budget, {})
            both = sorted(set(by_seed) & set(other))
            if bp and both:
                gap = 100 * statistics.mean(by_seed[s]["test_accuracy"] - other[s]["test_accuracy"] for s in both)
                out.append(f"| {run} | {bp} | {budget / 60:g} min | {gap:+.2f} (seeds {','.join(map(str, both))}) | "
                           f"{run if gap > 0 else bp if gap < 0 else 'level'} |")
    if spec.get("plot") and groups:
        plot_time(groups, spec, HERE.parent / spec["plot"])
        out.append(f"\n![test accuracy against training time]({spec['plot']})")
    return out


def duration(text: str) -> float:
    """A --time-budget in seconds (the package's own parser)."""
    from ffvision.config import duration_seconds

    return duration_seconds(text)


def plot_time(groups: dict[str, dict[float, dict[int, dict]]], spec: dict, path: Path) -> None:
    """Test accuracy (mean over seeds) against the training seconds spent: one curve per run, backprop dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for run, budgets in groups.items():
        xs = [statistics.mean(r["train_seconds"] for r in b.values()) / 60 for _, b in sorted(budgets.items())]
        ys = [100 * statistics.mean(r["test_accuracy"] for r in b.values()) for _, b in sorted(budgets.items())]
        local = "beside" in spec["runs"].get(run, {})
        ax.plot(xs, ys, marker="o", linestyle="-" if local else "--", label=run)
    ax.set(xlabel="training time (minutes, one torch thread)", ylabel="test accuracy (%)",
           title="FashionMNIST, 50,000 training images: accuracy against training time")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def latest_records(paths: list[Path]) -> dict[str, dict]:
    """The last record of each entry name in these JSON lines files."""
    latest: dict[str, dict] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            r = json.loads(line)
            latest[r["name"]] = r
    return latest


def bench_report(paths: list[Path]) -> list[str]:
    """Markdown rows of the speed protocol: per entry and method, img/s and exact peak memory, and each against
    the entry's first (the method measured) as ratios."""
    latest = latest_records(paths)
    out = ["| entry | run | train img/s | exact peak (MiB) | process peak (MiB) | the method ÷ this run: img/s, "
           "memory | machine | commit | date |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in latest.items():
        first = next(iter(r["runs"]))
        for run, m in r["runs"].items():
            q = r.get("ratios", {}).get(run)
            vs = f"{first}: ×{q['throughput']:.2f}, ×{q['memory']:.2f}" if q else "—"
            out.append(f"| {name} | {run} | {m['images_per_second']:.1f} | {m['peak_memory_bytes'] / 2**20:.1f} | "
                       f"{m['process_peak_bytes'] / 2**20:.0f} | {vs} | {r['machine']} | {r['commit']} | {r['date']} |")
    return out


def batch_sweep_report(paths: list[Path]) -> list[str]:
    """Markdown rows of a batch-size sweep protocol: per entry and variant, the peak at each batch size, the method's
    peak over this variant's at each, the largest batch measured within the budget and its img/s (without a budget:
    img/s at each batch size)."""
    latest = latest_records(paths)
    out = ["| entry | variant | peak MiB by batch size | method ÷ variant, peak | largest batch within the budget "
           "(reaches it at) | its img/s (no budget: by batch size) | machine | commit | date |",
           "|---|---|---|---|---|---|---|---|---|"]
    for name, r in latest.items():
        sizes, variants = r["batch_sizes"], r["variants"]
        method = next(iter(variants))
        budget = f"{r['budget_bytes'] / 2**30:g} GiB" if r.get("budget_bytes") else "—"
        for v, e in variants.items():
            peaks = ", ".join(f"{b}: {m / 2**20:,.0f}" for b, m in zip(sizes, e["peak_memory_bytes"]))
            ratio = "—" if v == method else ", ".join(
                f"{a / m:.2f}" for a, m in zip(variants[method]["peak_memory_bytes"], e["peak_memory_bytes"]))
            fits = e.get("largest_measured_batch_within_budget")
            at = e.get("batch_at_budget")
            if r.get("budget_bytes"):
                speed = f"{e['images_per_second'][sizes.index(fits)]:.1f}" if fits in sizes else "—"
                within = f"{fits if fits else 'none'} of {budget}{f' (~{at:,.0f})' if at else ''}"
            else:  # no budget (a speed comparison): img/s at every batch size
                speed = ", ".join(f"{b}: {s:,.1f}" for b, s in zip(sizes, e["images_per_second"]))
                within = "—"
            out.append(f"| {name} | {v} | {peaks} | {ratio} | {within} | {speed} | {r['machine']} | {r['commit']} | "
                       f"{r['date']} |")
    return out


def main() -> None:
    """Run or report one protocol."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("protocol", help="a name in benchmarks/protocols/ (quick, medium, small-data, folder, speed)")
    ap.add_argument("--only", nargs="*", default=None, help="these runs (or bench entries) only")
    ap.add_argument("--seeds", nargs="*", type=int, default=None, help="override the protocol's seeds")
    ap.add_argument("--budgets", nargs="*", type=parse_budget, default=None,
                    help="of a sweep, these budgets only: 'rule' (no budget flags) or k=v,k=v (epochs=20,batch_size=8)")
    ap.add_argument("--device", default="cpu", help="cpu (the protocols' machine) | cuda | auto")
    ap.add_argument("--out", type=Path, default=None, help="JSON lines file [default: results/PROTOCOL-MACHINE-DATE]")
    ap.add_argument("--resume", action="store_true",
                    help="skip the (run, budget, seed) already recorded on this machine (a run cut short goes on)")
    ap.add_argument("--runs-dir", default="runs/protocols", help="where the runs train")
    ap.add_argument("--parallel", type=int, default=1,
                    help="runs at a time, of a protocol that trains each run in its own process (soak)")
    ap.add_argument("--report", nargs="*", type=Path, default=None, help="print the markdown table of these records")
    ap.add_argument("--remeasure", action="store_true", help="deploy: measure the recorded runs' inference again "
                    "at this commit (their run directories kept), a new record each")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)  # the runs' progress
    spec = load(args.protocol)
    if args.report is not None:
        paths = args.report or sorted((HERE / "results").glob(f"{args.protocol}-*.jsonl"))
        if spec.get("report") in ("sweep", "soak", "time", "deploy"):
            kind = {"sweep": sweep_report, "soak": soak_report, "time": time_report,
                    "deploy": deploy_report}[spec["report"]]
            print("\n".join(kind(paths, spec)))
            return
        kind = {"batch-sweep": batch_sweep_report}.get(spec.get("report"), bench_report if "bench" in spec else report)
        print("\n".join(kind(paths)))
        return
    out = args.out or default_out(args.protocol, args.device)
    if args.remeasure:
        for r in latest_records(sorted((HERE / "results").glob(f"{args.protocol}-*.jsonl"))).values():
            emit({**r, **deployed(Path(r["run_dir"]), r["strategy"]), "trained_at": r.get("trained_at", r["commit"]),
                  "commit": commit(), "date": date.today().isoformat(), "machine": machine(args.device),
                  "command": r["command"] + " (inference: --remeasure)"}, out)
        return
    (run_bench if "bench" in spec else run_training)(args.protocol, spec, args, out)


if __name__ == "__main__":
    main()
