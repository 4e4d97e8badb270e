"""``embedkit train simcse``: fine-tune an encoder with SimCSE (a thin layer over
:func:`embedkit.training.train_simcse`).

    embedkit train simcse --model m3e-small --pooling cls --tasks LCQMC --out runs/lcqmc-cls
    embedkit train simcse --resume runs/lcqmc-cls          # continue from the latest checkpoint
    embedkit train simcse --supervised --pairs LCQMC:train --hard-negatives --out runs/sup
"""

from __future__ import annotations

import argparse
import sys
import warnings


class _OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line (``embedkit: error: ...``), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"embedkit: error: {message} (see: {self.prog} --help)\n")


# (flag, config field, type, help); every default is None so that what was typed can be told
# from what was not (for --resume); the real defaults live in SimCSEConfig.
_OPTIONS = [
    ("--model", "model", str, "hub id, local folder or alias (default: m3e-small)"),
    ("--pooling", "pooling", str, "cls, last-avg (mean), first-last-avg, pooler, pooler-tanh, "
                                  "layers-avg:I,J (default: the model's declared pooling, else cls)"),
    ("--tasks", "tasks", str, "unsupervised: comma-separated tasks (names or spec .json); their "
                              "sentences of every split, without labels"),
    ("--corpus", "corpus", str, "unsupervised: a text file, one sentence a line"),
    ("--out", "out_dir", str, "output model folder (written atomically)"),
    ("--pairs", "pairs", str, "supervised: TSV file s1<TAB>s2<TAB>label, task spec .json or "
                              "TASK:split (e.g. LCQMC:train); repeatable"),
    ("--triplets", "triplets", str, "supervised: TSV file anchor<TAB>positive<TAB>negative"),
    ("--loss", "loss", str, "supervised loss: infonce (in-batch negatives) or cosent "
                            "(default: infonce)"),
    ("--threshold", "threshold", float, "supervised InfoNCE: positives are pairs with label >= this "
                                        "(default: 1; e.g. 4 for 0-5 scores)"),
    ("--negative-max", "negative_max", float, "--hard-negatives: pairs with label <= this give the "
                                              "hard negatives (default: 0)"),
    ("--dropout", "dropout", float, "hidden and attention dropout while training (default: 0.3 "
                                    "unsupervised, the model's own supervised)"),
    ("--batch-size", "batch_size", int, "sentences (pairs) per batch (default: 64)"),
    ("--lr", "lr", float, "peak learning rate, AdamW, linear decay (default: 1e-5)"),
    ("--epochs", "epochs", int, "passes over the sample (default: 1)"),
    ("--max-sentences", "max_sentences", int, "sample at most this many sentences (supervised: "
                                              "examples), seeded (default: 10000 unsupervised, "
                                              "all supervised; 0: all)"),
    ("--temperature", "temperature", float, "InfoNCE temperature (default: 0.05)"),
    ("--cosent-scale", "cosent_scale", float, "CoSENT lambda (default: 20)"),
    ("--max-length", "max_length", int, "tokens per sentence with [CLS]/[SEP] (default: the "
                                        "task's; 64 for files)"),
    ("--seed", "seed", int, "seed of sampling, data order and dropout (default: 42)"),
    ("--device", "device", str, "cpu, cuda, cuda:N (default: cpu)"),
    ("--dtype", "dtype", str, "float32 or bfloat16 (autocast; weights stay float32) "
                              "(default: float32)"),
    ("--grad-accum", "grad_accum", int, "micro-batches per optimizer step (default: 1; in-batch "
                                        "negatives stay within a micro-batch)"),
    ("--warmup-steps", "warmup_steps", int, "linear warmup steps (default: 0)"),
    ("--weight-decay", "weight_decay", float, "AdamW weight decay (default: 0)"),
    ("--max-grad-norm", "max_grad_norm", float, "gradient clipping norm, 0 for none (default: 1)"),
    ("--save-every", "save_every", int, "write a resumable checkpoint every N steps to "
                                        "OUT.checkpoints/ (default: 0, never)"),
    ("--keep-checkpoints", "keep_checkpoints", int, "keep the newest N checkpoints, 0 all "
                                                    "(default: 1)"),
    ("--checkpoint-dir", "checkpoint_dir", str, "where checkpoints go (default: OUT.checkpoints)"),
    ("--log-every", "log_every", int, "loss history granularity in embedkit.json (default: 10)"),
    ("--stop-at", "stop_at", int, "stop at this step with a checkpoint (continue with --resume)"),
    ("--data-dir", "data_dir", str, "folder holding senteval_cn/ and AFQMC/ (default: "
                                    "$EMBEDKIT_DATA); also used for the train/test overlap check"),
    ("--source", "source", str, "task data: auto, local or hub (default: auto)"),
]


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="fine-tune an encoder (SimCSE, CoSENT)",
                       description="Fine-tune an encoder and write a model folder that embedkit "
                                   "bench, transformers and sentence-transformers load.")
    methods = p.add_subparsers(dest="method", metavar="METHOD", parser_class=_OneLineParser)
    methods.required = True
    s = methods.add_parser(
        "simcse", help="unsupervised or supervised SimCSE (InfoNCE), or CoSENT",
        description="Unsupervised SimCSE: every sentence twice per batch, dropout the only "
                    "augmentation, InfoNCE over in-batch cosines / temperature. Supervised "
                    "(--supervised): anchors vs positives with in-batch (and optional hard) "
                    "negatives, or --loss cosent. Writes OUT with embedkit.json; --save-every "
                    "writes checkpoints that --resume continues exactly (same device, dtype, "
                    "library versions and thread count).")
    for flag, dest, typ, help_ in _OPTIONS:
        s.add_argument(flag, dest=dest, type=typ, default=None, help=help_,
                       action="append" if dest == "pairs" else "store")
    s.add_argument("--supervised", action="store_true", default=None,
                   help="train on labelled pairs/triplets instead of unlabelled sentences")
    s.add_argument("--hard-negatives", dest="hard_negatives", action="store_true", default=None,
                   help="supervised InfoNCE: add a hard negative per anchor from label-0 pairs")
    s.add_argument("--skip-invalid", dest="skip_invalid", action="store_true", default=None,
                   help="skip malformed rows of task files instead of stopping")
    s.add_argument("--resume", metavar="DIR",
                   help="continue from a checkpoint (a step-NNNNNN folder, the checkpoints "
                        "folder or OUT); other settings default to the checkpoint's")
    s.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar with the running loss (default: on a terminal)")
    s.set_defaults(func=run)


def run(args) -> int:
    from embedkit.training import SimCSEConfig, TrainingWarning, train_simcse

    fields = [dest for _, dest, _, _ in _OPTIONS] + ["supervised", "hard_negatives",
                                                     "skip_invalid", "progress"]
    given = {f: getattr(args, f) for f in fields if getattr(args, f) is not None}
    if "max_grad_norm" in given and given["max_grad_norm"] == 0:
        given["max_grad_norm"] = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrainingWarning)  # train_simcse prints them as lines
        if args.resume:
            result = train_simcse(resume=args.resume, command=args.command_line, **given)
        else:
            result = train_simcse(SimCSEConfig(**given), command=args.command_line)
    rec = result.record
    loss = f"{result.final_loss:.4f}" if result.final_loss is not None else "n/a"
    where = result.out_dir if result.complete else result.checkpoint
    print(f"{rec['method']}: {result.steps}/{result.total_steps} steps on {rec['examples']} "
          f"examples, pooling {rec['pooling']}, final loss {loss}, "
          f"{result.seconds_per_step:.3f} s/step")
    if result.complete:
        print(f"saved {where} (embedkit bench --model {where})")
    else:
        print(f"stopped at step {result.steps}; checkpoint {where} "
              f"(continue: embedkit train simcse --resume {where})", file=sys.stderr)
    return 0
