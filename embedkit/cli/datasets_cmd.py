"""``embedkit datasets``: the tasks, their splits, sizes, labels and checksums."""

from __future__ import annotations

from embedkit.cli.common import add_data_options, write_json


def add_parser(sub) -> None:
    p = sub.add_parser("datasets", help="list the tasks with splits, rows, labels and sha256",
                       )
    p.add_argument("--tasks", help="comma-separated names or spec files (default: all built-in)")
    add_data_options(p)
    p.add_argument("--json", metavar="FILE", help="also write the listing as JSON ('-': stdout)")
    p.set_defaults(func=run)


def run(args) -> int:
    from embedkit.data import load_split, parse_tasks, task_names

    specs = parse_tasks(args.tasks or ",".join(task_names()))
    listing = []
    for spec in specs:
        for split in spec.splits:
            s = load_split(spec, split, data_dir=args.data_dir, source=args.source,
                           skip_invalid=args.skip_invalid)
            listing.append({"task": spec.name, "split": split, "rows": s.n_pairs,
                            "skipped": s.skipped, "unique_sentences": len(s.unique_sentences()),
                            "labels": s.label_distribution(), "max_length": spec.max_length,
                            "hub": f"{spec.hub.id}@{spec.hub.revision[:8]}" if spec.hub and spec.hub.revision else "",
                            "sha256": s.sha256, "source": s.source})
    if args.json:
        write_json(args.json, listing)
        if args.json == "-":
            return 0
    header = ["task", "split", "rows", "unique", "labels", "max_len", "sha256"]
    rows = [[r["task"], r["split"], str(r["rows"]), str(r["unique_sentences"]),
             " ".join(f"{k}:{v}" for k, v in r["labels"].items()), str(r["max_length"]),
             r["sha256"][:16]] for r in listing]
    widths = [max(len(x[i]) for x in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0
