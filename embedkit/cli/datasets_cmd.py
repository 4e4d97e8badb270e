"""``embedkit datasets``: the tasks, their splits, sizes, labels and checksums."""

from __future__ import annotations

from embedkit.cli.common import add_data_options, check_output_path, data_options, write_json
from embedkit.io.tables import text_table


def add_parser(sub) -> None:
    p = sub.add_parser("datasets", help="list the tasks with splits, rows, labels and sha256",
                       )
    p.add_argument("--tasks", help="comma-separated names or spec files (default: all built-in)")
    add_data_options(p)
    p.add_argument("--json", metavar="FILE", help="also write the listing as JSON ('-': stdout)")
    p.set_defaults(func=run)


def run(args) -> int:
    from embedkit.data import data_source, data_source_line, parse_tasks, task_names
    from embedkit.data.listing import list_datasets

    check_output_path(args.json, "json", stdout_ok=True)
    specs = parse_tasks(args.tasks or ",".join(task_names()))
    listing = list_datasets(specs, data_options(args))
    if args.json:
        write_json(args.json, listing)
        if args.json == "-":
            return 0
    header = ["task", "split", "rows", "unique", "labels", "max_len", "sha256"]
    rows = [[r["task"], r["split"], str(r["rows"]), str(r["unique_sentences"]),
             " ".join(f"{k}:{v}" for k, v in r["labels"].items()), str(r["max_length"]),
             r["sha256"][:16]] for r in listing]
    print(text_table(header, rows))
    line = data_source_line(data_source([r["source"] for r in listing], args.data_dir))
    if line:
        print(f"[{line}]")
    return 0
