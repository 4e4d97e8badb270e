"""Loading splits: the data directory, the hub (with ``datasets`` faked), the real files."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from embedkit.data import get_task, load_split, load_task, resolve_file
from embedkit.data.loading import data_dir_from_env, data_source, data_source_line, find_data_dir
from embedkit.data.loading import default_data_dirs as _REAL_DEFAULT_DIRS  # conftest stubs it
from embedkit.data.registry import builtin_tasks
from embedkit.errors import ConfigError, DataError, EmbedkitError


def make_data_dir(root):
    """A miniature senteval_cn/ + AFQMC/ layout."""
    (root / "senteval_cn" / "ATEC").mkdir(parents=True)
    (root / "senteval_cn" / "ATEC" / "ATEC.test.data").write_text("一个\t两个\t1\n三\t四\t0\n",
                                                                 encoding="utf-8")
    (root / "AFQMC").mkdir()
    (root / "AFQMC" / "dev.txt").write_text("a\tb\t0\n", encoding="utf-8")
    return root


def test_data_dir_from_env(monkeypatch, tmp_path):
    assert data_dir_from_env() is None
    monkeypatch.setenv("EMBEDKIT_DATA", str(tmp_path))
    assert data_dir_from_env() == tmp_path
    (tmp_path / "x").mkdir()
    assert data_dir_from_env(tmp_path / "x") == tmp_path / "x"  # the argument wins


@pytest.mark.parametrize("how", ["argument", "env"])
def test_a_named_data_dir_that_is_missing_is_refused_not_the_hub(monkeypatch, tmp_path, how):
    missing = tmp_path / "nowhere"
    if how == "env":
        monkeypatch.setenv("EMBEDKIT_DATA", str(missing))
    with pytest.raises(ConfigError, match="nowhere"):
        load_split(get_task("ATEC"), "test", data_dir=missing if how == "argument" else None)


def _record_info(monkeypatch) -> list[str]:
    """What embedkit.data.loading logs at INFO from now on (its logger's ``info``, whatever
    logging set-up an earlier test left)."""
    loading = sys.modules[find_data_dir.__module__]
    messages: list[str] = []
    monkeypatch.setattr(loading, "_announced", set())
    monkeypatch.setattr(loading.log, "info", lambda msg, *a: messages.append(msg % a))
    return messages


def test_default_data_dir_beside_the_checkout(monkeypatch, tmp_path):
    """Without data_dir or $EMBEDKIT_DATA, the first existing default is used, and said."""
    loading = sys.modules[find_data_dir.__module__]
    root = make_data_dir(tmp_path / "shared" / "data")
    monkeypatch.setattr(loading, "default_data_dirs", lambda: [tmp_path / "none", root])
    messages = _record_info(monkeypatch)
    found = find_data_dir()
    assert (found.path, found.found_by) == (root, "default")
    s = load_task("ATEC")["test"]
    assert s.n_pairs == 2 and s.source == str(root / "senteval_cn/ATEC/ATEC.test.data")
    assert messages == [f"data: local data folder {root} (the default: shared/data beside "
                        "the checkout)"]
    assert data_source([s.source]) == {"kind": "local", "local": [str(root)],
                                       "found_by": "default", "hub": []}
    monkeypatch.setenv("EMBEDKIT_DATA", str(root / "senteval_cn"))  # the variable wins
    assert find_data_dir().found_by == "EMBEDKIT_DATA"


def test_the_real_default_is_shared_data_beside_this_checkout():
    checkout = Path(__file__).resolve().parents[2]
    assert _REAL_DEFAULT_DIRS()[0] == checkout.parent / "shared" / "data"


def test_no_local_data_goes_to_the_hub_and_says_so(monkeypatch):
    messages = _record_info(monkeypatch)
    monkeypatch.setitem(sys.modules, "datasets", FakeDatasets(HUB_ROWS))
    s = load_task("ATEC")["test"]
    assert s.source.startswith("hub:C-MTEB/ATEC@")
    assert messages == ["data: no local data folder (no data_dir, no $EMBEDKIT_DATA, nothing "
                        "at the defaults); loading from the Hugging Face hub"]
    assert data_source([s.source])["kind"] == "hub"
    assert data_source_line(data_source([s.source])) == (
        f"data: hub C-MTEB/ATEC@{get_task('ATEC').hub.revision}")


def test_unknown_split_names_the_task_splits_not_the_hub(tmp_path):
    with pytest.raises(ConfigError, match="task ATEC has no split 'train'; its splits: valid, test"):
        load_split(get_task("ATEC"), "train", data_dir=make_data_dir(tmp_path / "d"))


@pytest.mark.parametrize("named", ["root", "senteval_cn"])
def test_data_dir_may_name_the_root_or_senteval_cn(tmp_path, monkeypatch, named):
    root = make_data_dir(tmp_path / "data")
    d = root if named == "root" else root / "senteval_cn"
    monkeypatch.setenv("EMBEDKIT_DATA", str(d))
    s = load_task("ATEC")["test"]
    assert s.n_pairs == 2 and s.labels.tolist() == [1.0, 0.0]
    assert s.source.endswith("senteval_cn/ATEC/ATEC.test.data")
    assert resolve_file(get_task("ATEC"), "test", d).resolve() == (
        root / "senteval_cn" / "ATEC" / "ATEC.test.data").resolve()
    # AFQMC sits beside senteval_cn/, found from either
    assert load_task("AFQMC", data_dir=d)["valid"].n_pairs == 1


def test_missing_local_file_names_the_path(tmp_path):
    with pytest.raises(DataError) as e:
        load_split(get_task("BQ"), "test", data_dir=tmp_path)
    assert str(e.value) == (f"{tmp_path / 'senteval_cn/BQ/BQ.test.data'}: file not found "
                            "(set data_dir or EMBEDKIT_DATA to the folder holding senteval_cn/, or the one "
                            "holding the task folders)")


def test_local_source_without_data_dir():
    with pytest.raises(ConfigError, match="task ATEC: no data directory; give data_dir"):
        load_split(get_task("ATEC"), "test", source="local")


def test_bad_source_and_missing_split(tmp_path):
    with pytest.raises(ConfigError, match="source 'web' is not one of auto, local, hub"):
        load_split(get_task("ATEC"), "test", source="web")
    with pytest.raises(ConfigError, match="task ATEC has no split 'train'; its splits"):
        load_split(get_task("ATEC"), "train", data_dir=tmp_path, source="local")
    with pytest.raises(ConfigError, match="task ATEC has no split 'train'; its splits"):
        load_split(get_task("ATEC"), "train", source="hub")


def test_spec_relative_files(spec_file, pairs_file):
    data = load_task(str(spec_file))
    assert list(data) == ["test"]
    s = data["test"]
    assert s.n_pairs == 40 and s.source == str(pairs_file) and s.task == "tiny-sts"
    assert set(s.labels.tolist()) <= {0, 1, 2, 3, 4, 5}


class FakeDatasets(types.ModuleType):
    def __init__(self, rows=None, error=None):
        super().__init__("datasets")
        self.rows, self.error, self.calls = rows, error, []

    def load_dataset(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        if self.error:
            raise self.error
        return list(self.rows)


HUB_ROWS = [{"sentence1": "一个人在切洋葱。", "sentence2": "男人切洋葱。", "score": 1},
            {"sentence1": "一个男人在说话。", "sentence2": "一个人在做饭。", "score": 0},
            {"sentence1": "海龟在水中游泳。", "sentence2": "一只海龟在水下行走。", "score": 1}]


def test_hub_loading_without_network(monkeypatch):
    fake = FakeDatasets(HUB_ROWS)
    monkeypatch.setitem(sys.modules, "datasets", fake)
    spec = get_task("ATEC")
    s = load_task("ATEC")["test"]  # no data dir: auto goes to the hub
    assert fake.calls == [(("C-MTEB/ATEC", None), {"revision": spec.hub.revision,
                                                   "split": "test"})]
    assert s.source == f"hub:C-MTEB/ATEC@{spec.hub.revision}/test"
    assert s.n_pairs == 3 and s.labels.tolist() == [1.0, 0.0, 1.0]
    assert s.sentences2[2] == "一只海龟在水下行走。"
    assert len(s.sha256) == 64
    # the valid split maps to the hub's "validation"
    load_split(spec, "dev", source="hub")
    assert fake.calls[-1][1]["split"] == "validation"


def test_hub_rows_are_validated(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets",
                        FakeDatasets([*HUB_ROWS, {"sentence1": "a", "sentence2": "b", "score": 3}]))
    spec = get_task("ATEC")
    with pytest.raises(DataError, match=rf"^hub:C-MTEB/ATEC@{spec.hub.revision}/test:4: label 3 "
                                        r"is outside the range \[0, 1\]$"):
        load_task("ATEC")
    s = load_task("ATEC", skip_invalid=True)["test"]
    assert (s.n_pairs, s.skipped) == (3, 1)


def test_hub_failure_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", FakeDatasets(error=ConnectionError("offline")))
    with pytest.raises(EmbedkitError, match=r"could not load C-MTEB/STSB@\w+ split test from the "
                                            r"hub \(ConnectionError: offline\); give data_dir"):
        load_task("STS-B")


def test_hub_without_datasets_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes ``import datasets`` fail
    with pytest.raises(ConfigError, match="needs the 'datasets' package"):
        load_task("LCQMC")


# -- the real public files ------------------------------------------------------------------

@pytest.mark.shared_data
@pytest.mark.parametrize("sub", ["", "senteval_cn"])
def test_env_data_dir_finds_atec(shared_data_dir, monkeypatch, sub):
    monkeypatch.setenv("EMBEDKIT_DATA", str(shared_data_dir / sub) if sub else str(shared_data_dir))
    path = resolve_file(get_task("ATEC"), "test", data_dir_from_env())
    assert path.is_file() and path.name == "ATEC.test.data"


def _sha256sums(shared_data_dir) -> dict[str, str]:
    out = {}
    for line in (shared_data_dir / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        out[name.removeprefix("./")] = digest
    return out


@pytest.mark.shared_data
def test_builtin_specs_carry_the_published_checksums(shared_data_dir):
    """Every file of SHA256SUMS is a built-in task's split with that sha256 in its spec (what
    makes mteb result files name C-MTEB's dataset revision)."""
    sums = _sha256sums(shared_data_dir)
    declared = {spec.files[split]: sha for spec in builtin_tasks().values()
                for split, sha in spec.sha256.items()}
    assert declared == sums


@pytest.mark.shared_data
@pytest.mark.parametrize("task,n,labels", [
    ("ATEC", 20000, {"0": 16390, "1": 3610}),
    ("PAWSX", 2000, {"0": 1106, "1": 894}),
    ("STS-B", 1361, {"0": 241, "1": 193, "2": 261, "3": 330, "4": 239, "5": 97}),
])
def test_real_test_splits(shared_data_dir, monkeypatch, task, n, labels):
    monkeypatch.setenv("EMBEDKIT_DATA", str(shared_data_dir))
    s = load_task(task)["test"]
    assert s.n_pairs == n and s.skipped == 0
    assert s.label_distribution() == labels
    rel = f"senteval_cn/{task}/{task}.test.data"
    assert s.sha256 == _sha256sums(shared_data_dir)[rel]
    if task == "PAWSX":
        ns = [i for i, (a, b) in enumerate(zip(s.sentences1, s.sentences2, strict=True)) if "NS" in (a, b)]
        assert len(ns) == 25 and all(s.labels[i] == 0 for i in ns)
        assert sum(a == b for a, b in zip(s.sentences1, s.sentences2, strict=True)) == 74


@pytest.mark.shared_data
def test_conftest_fallback_matches_the_real_file(shared_data_dir, fallback_lines):
    lines = (shared_data_dir / "senteval_cn/STS-B/STS-B.test.data").read_text(
        encoding="utf-8").splitlines()
    assert lines[:40] == fallback_lines
