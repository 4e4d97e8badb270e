"""SimCSE report: an encoder before and after SimCSE on each task, next to whitening.

Run as ``python -m embedkit.experiments.simcse_report --out eval/simcse-m3e-small.md`` (``make
eval-simcse``). For each task it trains unsupervised SimCSE on the task's own unlabelled
sentences with the Chinese experiments' settings (the defaults of ``embedkit train simcse``),
then scores on the test split (whitening protocol): the base encoder raw, whitened (fitted on
the task, beta = gamma = 1) and whitened to 256 dimensions, and the trained encoder. It also
runs supervised training on STS-B train (InfoNCE with label >= 4 as positives, and CoSENT on
the graded labels) and scores STS-B test. A finished run whose recorded configuration equals the
one asked for is reused, so regenerating the report after a change to the text is cheap.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from embedkit.io.atomic import atomic_write_json, atomic_write_text
from embedkit.experiments.bench import run_bench
from embedkit.encoders.cache import EmbeddingCache
from embedkit.data import DEFAULT_TASKS
from embedkit.encoders import Encoder
from embedkit.provenance import library_versions, machine_description
from embedkit.experiments.report import provenance_lines
from embedkit.training import SimCSEConfig, train_simcse

WHITEN = ("whiten:beta=1,gamma=1,k=all", "whiten:beta=1,gamma=1,k=256")


def _finished(cfg: SimCSEConfig) -> dict | None:
    """The record of a complete earlier run with the same configuration, else None."""
    path = Path(cfg.out_dir) / "embedkit.json"
    if not path.is_file():
        return None
    rec = json.loads(path.read_text(encoding="utf-8"))
    if not rec.get("complete"):
        return None
    want = {k: v for k, v in cfg.to_dict().items() if k not in ("progress", "out_dir")}
    have = {k: v for k, v in rec.get("config", {}).items() if k not in ("progress", "out_dir")}
    return rec if want == have else None


def train_or_reuse(cfg: SimCSEConfig) -> dict:
    rec = _finished(cfg)
    if rec is not None:
        print(f"reusing {cfg.out_dir} (same configuration, complete)", file=sys.stderr)
        return rec
    ckpts = sorted(Path(str(cfg.out_dir) + ".checkpoints").glob("step-*"))
    result = train_simcse(cfg, resume=ckpts[-1] if ckpts else None)
    return result.record


def _score(model, pooling: str, task: str, cache: EmbeddingCache, data_dir, post=()) -> dict:
    rec = run_bench(model, [pooling], [task], ["test"], data_dir=data_dir, cache=cache,
                    post=list(post), fit_on="task")
    return {label: r[task]["test"]["spearman"] for label, r in rec["results"].items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m embedkit.experiments.simcse_report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="m3e-small")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS))
    p.add_argument("--runs-dir", default="runs/simcse")
    p.add_argument("--data-dir")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--supervised-task", default="STS-B",
                   help="task whose train split trains the supervised runs ('' to skip)")
    p.add_argument("--out", default="eval/simcse-m3e-small.md")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    argv_used = list(sys.argv[1:] if argv is None else argv)
    cache = EmbeddingCache()
    base = Encoder(args.model, cache=cache)
    pooling = base.default_pooling
    runs = Path(args.runs_dir)
    slug = Path(args.model).name
    rows = []
    for task in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        cfg = SimCSEConfig(model=args.model, tasks=[task], out_dir=str(runs / f"{slug}-{task}"),
                           pooling=pooling, seed=args.seed, data_dir=args.data_dir,
                           save_every=50)
        rec = train_or_reuse(cfg)
        scores = _score(base, pooling, task, cache, args.data_dir, WHITEN)
        trained = _score(str(cfg.out_dir), pooling, task, cache, args.data_dir)
        rows.append({"task": task, "raw": scores[pooling],
                     "whiten": scores[f"{pooling} + {WHITEN[0]}"],
                     "whiten256": scores[f"{pooling} + {WHITEN[1]}"],
                     "simcse": trained[pooling], "steps": rec["steps"],
                     "sentences": rec["examples"], "seconds_per_step": rec["seconds_per_step"],
                     "final_loss": rec["final_loss"], "out_dir": str(cfg.out_dir),
                     "data_sha256": rec["data"].get("sha256")})
        print(f"{task}: raw {100 * rows[-1]['raw']:.2f}, simcse {100 * rows[-1]['simcse']:.2f}",
              file=sys.stderr)
    sup_rows = []
    if args.supervised_task:
        t = args.supervised_task
        for name, extra in (("InfoNCE, positives label >= 4", {"loss": "infonce", "threshold": 4.0}),
                            ("CoSENT on the 0-5 labels", {"loss": "cosent"})):
            cfg = SimCSEConfig(model=args.model, supervised=True, pairs=[f"{t}:train"],
                               out_dir=str(runs / f"{slug}-{t}-sup-{extra['loss']}"),
                               pooling=pooling, seed=args.seed, data_dir=args.data_dir, **extra)
            rec = train_or_reuse(cfg)
            trained = _score(str(cfg.out_dir), pooling, t, cache, args.data_dir)
            sup_rows.append({"run": name, "task": t, "simcse": trained[pooling],
                             "steps": rec["steps"], "examples": rec["examples"],
                             "seconds_per_step": rec["seconds_per_step"],
                             "final_loss": rec["final_loss"], "out_dir": str(cfg.out_dir)})
    record = {"command": "python -m embedkit.experiments.simcse_report " + shlex.join(argv_used),
              "versions": library_versions(), "machine": machine_description(),
              "model": base.describe(), "pooling": pooling, "seed": args.seed,
              "unsupervised": rows, "supervised": sup_rows,
              "seconds_total": round(time.perf_counter() - t0, 1)}
    md = render(record)
    atomic_write_text(args.out, md)
    atomic_write_json(args.out.rsplit(".", 1)[0] + ".json", record)
    print(md)
    return 0


def render(record: dict) -> str:
    x = lambda v: f"{100 * v:.2f}"  # noqa: E731
    m = record["model"]
    out = ["# SimCSE on " + m["name"], ""] + provenance_lines(record) + [
        f"- Model: `{m['name']}` (identity `{m['identity']}`), pooling {record['pooling']} in "
        "training and evaluation; test splits, whitening protocol (max length 64, PAWSX 128)",
        "- Unsupervised SimCSE: dropout 0.3, batch 64, lr 1e-5, one epoch, up to 10,000 "
        "sentences sampled from the task's splits without labels, temperature 0.05, no MLM loss, "
        f"no MLP head; seed {record['seed']}",
        "- Whitening: fitted on every sentence of every split of the task (the published "
        "protocol), beta = gamma = 1", "",
        "## Spearman x 100 on the test split", "",
        "| task | raw | whitened | whitened-256 | SimCSE | steps | sentences | s/step | final loss |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in record["unsupervised"]:
        out.append(f"| {r['task']} | {x(r['raw'])} | {x(r['whiten'])} | {x(r['whiten256'])} | "
                   f"{x(r['simcse'])} | {r['steps']} | {r['sentences']} | "
                   f"{r['seconds_per_step']:.2f} | {r['final_loss']:.4f} |")
    rs = record["unsupervised"]
    if rs:
        avg = {k: sum(r[k] for r in rs) / len(rs) for k in ("raw", "whiten", "whiten256", "simcse")}
        out.append(f"| avg | {x(avg['raw'])} | {x(avg['whiten'])} | {x(avg['whiten256'])} | "
                   f"{x(avg['simcse'])} | | | | |")
    if record["supervised"]:
        out += ["", "## Supervised, trained on STS-B train, Spearman x 100 on STS-B test", "",
                "| run | Spearman | steps | examples | s/step | final loss |",
                "|---|---:|---:|---:|---:|---:|"]
        for r in record["supervised"]:
            out.append(f"| {r['run']} | {x(r['simcse'])} | {r['steps']} | {r['examples']} | "
                       f"{r['seconds_per_step']:.2f} | {r['final_loss']:.4f} |")
    out += ["", f"Seconds per step are wall-clock on the machine above (CPU); total "
            f"{record['seconds_total']:.0f} s for this report (reused runs excluded).", ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
