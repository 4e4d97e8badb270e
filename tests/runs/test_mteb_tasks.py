"""``bench --mteb-tasks`` (embedkit.runs.mteb_tasks) offline, on tiny mteb tasks built in
memory from the tiny model's sentences: mteb 2.26 ``AbsTask`` subclasses whose ``load_data``
builds the data."""

from __future__ import annotations

import json
from typing import Any

import pytest

mteb = pytest.importorskip("mteb")

from datasets import Dataset, DatasetDict  # noqa: E402
from mteb.abstasks.classification import AbsTaskClassification  # noqa: E402
from mteb.abstasks.pair_classification import AbsTaskPairClassification  # noqa: E402
from mteb.abstasks.retrieval import AbsTaskRetrieval  # noqa: E402
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData  # noqa: E402
from mteb.abstasks.task_metadata import TaskMetadata  # noqa: E402

from tests.conftest import N_PAIRS, source_lines, source_sentences  # noqa: E402


def _metadata(name: str, kind: str, main_score: str) -> TaskMetadata:
    return TaskMetadata(
        name=name, type=kind, main_score=main_score,
        description="A tiny in-memory task built from the tiny model's sentences for tests.",
        reference="https://example.org/embedkit-tiny",
        dataset={"path": "embedkit/tiny", "revision": "tiny-1"}, category="t2t",
        eval_splits=["test"], eval_langs=["cmn-Hans"], date=("2024-01-01", "2024-01-01"),
        dialect=[], domains=[], task_subtypes=[], license="cc-by-4.0",
        annotations_creators="derived", modalities=["text"], sample_creation="found",
        bibtex_citation="")


def _texts() -> list[str]:
    return list(dict.fromkeys(source_sentences()))


class TinyClassification(AbsTaskClassification):
    """Label: whether the sentence is longer than the median (train: first half)."""

    metadata = _metadata("EmbedkitTinyClassification", "Classification", "accuracy")

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        texts = _texts()[:48]
        median = sorted(len(t) for t in texts)[len(texts) // 2]
        labels = [int(len(t) > median) for t in texts]
        half = len(texts) // 2
        self.dataset = DatasetDict({
            "train": Dataset.from_dict({"text": texts[:half], "label": labels[:half]}),
            "test": Dataset.from_dict({"text": texts[half:], "label": labels[half:]})})
        self.data_loaded = True


class TinyPairClassification(AbsTaskPairClassification):
    """The tiny STS pairs: duplicate when their gold score is at least 2.5."""

    metadata = _metadata("EmbedkitTinyPairClassification", "PairClassification",
                         "max_ap")

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        lines = source_lines()[: N_PAIRS]
        parts = [line.split("\t") for line in lines]
        self.dataset = DatasetDict({"test": Dataset.from_dict({
            "sentence1": [p[0] for p in parts], "sentence2": [p[1] for p in parts],
            "labels": [int(float(p[2]) >= 2.5) for p in parts]})})
        self.data_loaded = True


class TinyRetrieval(AbsTaskRetrieval):
    """Queries: the first sentence of 12 pairs; corpus: every second sentence (relevant: its
    pair's, graded by the pair's score)."""

    metadata = _metadata("EmbedkitTinyRetrieval", "Retrieval", "ndcg_at_10")

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        parts = [line.split("\t") for line in source_lines()[: N_PAIRS]]
        corpus = [{"id": f"d{i}", "title": "", "text": p[1]} for i, p in enumerate(parts)]
        queries = [{"id": f"q{i}", "text": p[0]} for i, p in enumerate(parts[:12])]
        qrels = {f"q{i}": {f"d{i}": max(1, int(float(p[2])))} for i, p in enumerate(parts[:12])}
        split = RetrievalSplitData(queries=Dataset.from_list(queries),
                                   corpus=Dataset.from_list(corpus), relevant_docs=qrels,
                                   top_ranked=None)
        self.dataset = {"default": {"test": split}}
        self.data_loaded = True


TINY_TASKS = [TinyClassification, TinyPairClassification, TinyRetrieval]


from embedkit.cli.main import main  # noqa: E402
from embedkit.errors import ConfigError, DataError  # noqa: E402
from embedkit.integrations.mteb import MtebEncoder  # noqa: E402
from embedkit.postprocess import parse_post  # noqa: E402
from embedkit.runs import mteb_tasks  # noqa: E402
from embedkit.runs.mteb_tasks import (  # noqa: E402
    get_mteb_tasks,
    load_task_data,
    run_mteb_tasks,
    task_texts,
)


@pytest.fixture(scope="module")
def spread_encoder(spread_model_dir):
    from embedkit.encoders import Encoder

    return Encoder(str(spread_model_dir), cache=None)


def _mteb_score(model, task) -> tuple[float, dict]:
    """The task scored by mteb.evaluate itself (no cache), its main score and test scores."""
    res = mteb.evaluate(model, [task], cache=None, show_progress_bar=False).task_results[0]
    return res.get_score(), res.scores["test"][0]


@pytest.mark.parametrize("task_cls", TINY_TASKS, ids=lambda c: c.metadata.type)
def test_bench_mteb_task_equals_mteb_evaluate(spread_encoder, task_cls):
    rec = run_mteb_tasks(spread_encoder, ["last-avg"], [task_cls()])
    name = task_cls.metadata.name
    got = rec["mteb"]["results"]["last-avg"][name]
    main, scores = _mteb_score(MtebEncoder(spread_encoder, pooling="last-avg"), task_cls())
    assert 0 < main <= 1
    assert got["main_score"] == pytest.approx(main, abs=1e-12)
    assert got["main_metric"] == task_cls.metadata.main_score
    assert got["type"] == task_cls.metadata.type
    assert got["main_score_by_split"] == {"test": pytest.approx(scores["main_score"])}
    split = got["splits"]["test"]["default"]
    assert split[task_cls.metadata.main_score] == pytest.approx(scores[task_cls.metadata.main_score])
    assert rec["kind"] == "bench" and rec["settings"]["tasks"] == []
    assert rec["settings"]["mteb_tasks"] == [name]
    assert rec["mteb"]["tasks"][name]["type"] == task_cls.metadata.type
    assert rec["results"] == {"last-avg": {"pooling": "last-avg", "post": None}}


def test_post_chain_fitted_on_the_task_texts(spread_encoder):
    """A whitening row: fitted on every text of the task (queries and corpus) before mteb
    encodes anything; the score is mteb's with that fitted map."""
    rec = run_mteb_tasks(spread_encoder, ["cls"], [TinyRetrieval()], post=["whiten:k=8"])
    task = TinyRetrieval()
    task.load_data()
    texts = task_texts(task)
    parts = [line.split("\t") for line in source_lines()[:N_PAIRS]]
    assert set(texts) == {p[1] for p in parts} | {p[0] for p in parts[:12]}
    max_len = spread_encoder.model_max_length()
    fitted = parse_post("whiten:k=8").fit(spread_encoder.encode(texts, "cls", max_length=max_len))
    main, _ = _mteb_score(MtebEncoder(spread_encoder, fitted, pooling="cls"), TinyRetrieval())
    row = rec["mteb"]["results"]["cls + whiten:beta=1,gamma=1,k=8"]["EmbedkitTinyRetrieval"]
    assert row["main_score"] == pytest.approx(main, abs=1e-12)
    raw = rec["mteb"]["results"]["cls"]["EmbedkitTinyRetrieval"]["main_score"]
    assert raw != pytest.approx(main)  # the map changed the ranking's score
    assert rec["mteb"]["fit"]["EmbedkitTinyRetrieval"]["n_sentences"] == len(texts)
    assert "post=whiten" in rec["mteb"]["model_names"]["cls + whiten:beta=1,gamma=1,k=8"]


def test_post_options_are_the_chains_and_how_they_are_fitted(spread_encoder):
    """``post`` takes the runners' one PostOptions (chains, fit_on, fit_unique, force) as well
    as bare chains; the same chains fitted on the same texts give the same scores."""
    from embedkit.postprocess.spec import PostOptions

    label = "cls + whiten:beta=1,gamma=1,k=8"
    bare = run_mteb_tasks(spread_encoder, ["cls"], [TinyRetrieval()], post=["whiten:k=8"])
    opts = run_mteb_tasks(spread_encoder, ["cls"], [TinyRetrieval()],
                          post=PostOptions(chains=("whiten:k=8",), fit_on="task"))
    got, want = (r["mteb"]["results"][label]["EmbedkitTinyRetrieval"] for r in (opts, bare))
    assert got["main_score"] == want["main_score"] and got["splits"] == want["splits"]
    assert opts["mteb"]["fit"]["EmbedkitTinyRetrieval"]["n_sentences"] == (
        bare["mteb"]["fit"]["EmbedkitTinyRetrieval"]["n_sentences"])


def test_cli_bench_mteb_tasks(spread_model_dir, spec_file, tmp_path, monkeypatch, capsys):
    """A task of one's own registered by name (the hook the CLI looks in), beside an STS task;
    --mteb-results keeps mteb's own TaskResult files, which mteb reads back."""
    monkeypatch.setitem(mteb_tasks.REGISTERED, "EmbedkitTinyPairClassification",
                        TinyPairClassification)
    out, cache = tmp_path / "rec.json", tmp_path / "mteb"
    assert main(["bench", "--model", str(spread_model_dir), "--tasks", str(spec_file),
                 "--pooling", "cls", "--mteb-tasks", "EmbedkitTinyPairClassification",
                 "--output", str(out), "--mteb-results", str(cache)]) == 0
    captured = capsys.readouterr()
    rec = json.loads(out.read_text(encoding="utf-8"))
    got = rec["mteb"]["results"]["cls"]["EmbedkitTinyPairClassification"]["main_score"]
    assert "tiny-sts" in rec["results"]["cls"]  # the STS task ran as before
    lines = captured.out.splitlines()
    title = lines.index(next(ln for ln in lines if "mteb tasks" in ln))
    assert lines[title + 1].split() == ["row", "EmbedkitTinyPairClassification", "(max_ap)"]
    assert lines[title + 2].split() == ["cls", f"{100 * got:.2f}"]
    assert "2 task files in 1 model folders" in captured.err
    results = mteb.ResultCache(cache_path=cache).load_results()
    found = {r.task_name: r.get_score() for m in results.model_results for r in m.task_results}
    assert found["EmbedkitTinyPairClassification"] == pytest.approx(got, abs=1e-6)  # 6 digits
    from embedkit.encoders import Encoder

    main_score, _ = _mteb_score(MtebEncoder(Encoder(str(spread_model_dir), cache=None),
                                            pooling="cls"), TinyPairClassification())
    assert got == pytest.approx(main_score, abs=1e-12)


def test_unknown_task_is_one_line_with_close_matches(tiny_model_dir, capsys):
    with pytest.raises(ConfigError, match=r"close matches: Banking77Classification\b"):
        get_mteb_tasks(["Banking77Clasification"])
    assert main(["bench", "--model", str(tiny_model_dir),
                 "--mteb-tasks", "banking77classificaton"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Banking77Classification" in err[0] and "--mteb-tasks" in err[0]


def test_offline_real_task_is_one_line(tiny_model_dir, monkeypatch, capsys):
    """A real mteb task whose data is not cached, the hub out of reach: datasets is put in
    offline mode (no half-minute of retries) and the failure is one line naming the task."""
    import datasets.config
    from huggingface_hub import constants

    monkeypatch.setattr(mteb_tasks, "hub_reachable", lambda *a, **k: False)
    # the test session runs with HF_HUB_OFFLINE=1 (conftest): start from online flags
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert main(["bench", "--model", str(tiny_model_dir),
                 "--mteb-tasks", "Banking77Classification"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "'Banking77Classification'" in err[0] and "not in the local datasets cache" in err[0]
    assert "network access" in err[0]
    assert (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE) == (False, False)


def test_load_task_data_online_failure_names_the_task():
    class Broken(TinyClassification):
        def load_data(self, **kwargs: Any) -> None:
            raise ConnectionError("Couldn't reach 'x/y' on the Hub (timeout)\nmore")

    with pytest.raises(DataError, match=r"^mteb task 'EmbedkitTinyClassification': its data "
                                        r"could not be loaded: Couldn't reach 'x/y' on the Hub "
                                        r"\(timeout\)$"):
        load_task_data(Broken(), online=True)


def test_hub_probe_respects_offline_and_times_out(monkeypatch):
    from huggingface_hub import constants

    calls = []

    def refuse(address, timeout):
        calls.append((address, timeout))
        raise TimeoutError("timed out")

    monkeypatch.setattr(mteb_tasks.socket, "create_connection", refuse)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert mteb_tasks.hub_reachable(timeout=0.5) is False
    assert calls == [(("huggingface.co", 443), 0.5)]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert mteb_tasks.hub_reachable() is False and len(calls) == 1


def test_non_text_task_refused():
    task = TinyClassification()
    task.metadata = task.metadata.model_copy(update={"modalities": ["image"]})
    with pytest.raises(ConfigError, match="takes image; embedkit encoders take text only"):
        get_mteb_tasks([task])


def test_texts_of_a_task_cover_every_column():
    task = TinyPairClassification()
    task.load_data()
    parts = [line.split("\t") for line in source_lines()[:N_PAIRS]]
    assert task_texts(task) == list(dict.fromkeys([p[0] for p in parts] + [p[1] for p in parts]))


def test_cli_mteb_tasks_alone_with_post_and_markdown(spread_model_dir, tmp_path, monkeypatch,
                                                     capsys):
    """Without --tasks only the mteb task runs (no STS table); a --post row is fitted on the
    task's texts; the Markdown report has the mteb table."""
    monkeypatch.setitem(mteb_tasks.REGISTERED, "EmbedkitTinyClassification", TinyClassification)
    out, md = tmp_path / "rec.json", tmp_path / "report.md"
    assert main(["bench", "--model", str(spread_model_dir), "--pooling", "cls",
                 "--mteb-tasks", "EmbedkitTinyClassification", "--post", "whiten:k=4",
                 "--output", str(out), "--markdown", str(md)]) == 0
    stdout = capsys.readouterr().out
    rec = json.loads(out.read_text(encoding="utf-8"))
    assert rec["settings"]["tasks"] == [] and "Spearman" not in stdout
    rows = rec["mteb"]["results"]
    assert list(rows) == ["cls", "cls + whiten:beta=1,gamma=1,k=4"]
    assert rec["mteb"]["fit"]["EmbedkitTinyClassification"]["on"] == \
        "mteb:EmbedkitTinyClassification"
    score = rows["cls + whiten:beta=1,gamma=1,k=4"]["EmbedkitTinyClassification"]["main_score"]
    text = md.read_text(encoding="utf-8")
    assert "## mteb tasks: main score x 100" in text and "Spearman" not in text
    assert f"| cls + whiten:beta=1,gamma=1,k=4 | {100 * score:.2f} |" in text


def test_cli_task_named_module_class(tiny_model_dir, capsys):
    """A task of one's own named on the command line as module:Class; a bad one is one line."""
    ref = f"{__name__}:TinyRetrieval" if "." in __name__ else \
        "tests.integrations.test_mteb_tasks:TinyRetrieval"
    tasks = get_mteb_tasks([ref])
    assert type(tasks[0]).__name__ == "TinyRetrieval"
    assert main(["bench", "--model", str(tiny_model_dir), "--mteb-tasks", "no_such_mod:Task"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot import it (ModuleNotFoundError" in err[0]
