"""``embedkit cache info|clear``: what the embedding cache holds, and emptying it."""

from __future__ import annotations

from embedkit.cli.common import add_model_name


def add_parser(sub) -> None:
    p = sub.add_parser("cache", help="show or clear the embedding cache")
    p.add_argument("action", choices=("info", "clear"))
    p.add_argument("--cache-dir", metavar="DIR", help="default: $EMBEDKIT_CACHE or the user cache dir")
    add_model_name(p, what="clear only this model's entries: the name it was run with, its "
                           "folder, or its identity (an exact match, never a part)",
                   default_text="every model's")
    p.set_defaults(func=run)


def run(args) -> int:
    from embedkit.encoders.cache import EmbeddingCache, namespace_run
    from embedkit.reports.bench import run_description

    cache = EmbeddingCache(args.cache_dir)
    if args.action == "clear":
        n = cache.clear(args.model)
        print(f"removed {n} cache namespace(s) from {cache.root}")
        return 0
    entries = cache.namespaces()
    print(f"cache: {cache.root}  ({len(entries)} namespaces, "
          f"{sum(e['bytes'] for e in entries) / 2**20:.1f} MiB)")
    for e in entries:
        s = e["settings"]
        # how the encoder ran (backend, precision, prompt, revision), as table titles say it
        run_text = run_description(namespace_run(s))
        print(f"  {e['namespace'][:12]}  {s.get('model', '?')}  {s.get('pooling', '?')}  "
              f"max_length={s.get('max_length', '?')}  [{run_text}]  "
              f"rows={e['rows']}  {e['bytes'] / 2**20:.1f} MiB")
    return 0
