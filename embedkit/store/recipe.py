"""How an index folder's vectors were made: the typed :class:`Recipe` in ``index.json``, and the
:class:`RecipeConflict` s between it and the settings a search asks for; :func:`make_recipe`, the
recipe of an encoder's vectors (an index folder's and an encode folder's alike), and
:func:`post_metadata`, what their ``post.safetensors`` says.

``index.json``'s ``recipe`` keys (unchanged on disk; :meth:`Recipe.to_dict` writes them in this
order and :meth:`Recipe.from_dict` reads older folders too):

=================== ==========================================================================
``model``           the model as given (hub id, alias or folder); ``model_path`` its resolved
                    folder or id, ``model_identity`` what its weights are (checked at search)
``pooling``         canonical pooling name
``max_length``      tokens per text, counting [CLS] and [SEP]
``dtype``,          encoder settings that change vectors (``backend``: torch, onnx or
``lowercase``,      openvino; ``quantize``: none or int8; ``prompt``: before each corpus text;
``backend``,        ``query_prompt``: before each query; absent in older folders: torch,
``quantize``,       none, no prompts)
``prompt``,
``query_prompt``
``post``            canonical post-processing spec (``file:PATH`` for a transform file), or null
``post_file``,      ``post.safetensors`` and its sha256 (null without a postprocessor)
``post_sha256``
``post_sources``    transform files used: ``[{"path", "sha256"}]``
``fit``             what a chain was fitted on: ``{"on", "n_sentences", "sha256"}`` or null
``corpus``          where the texts came from, one entry per build / add
``search_defaults`` the ``nprobe`` / ``ef_search`` a search uses when given none, chosen at
                    build time, with the recall@10 it reached (absent in older folders and
                    in indexes with nothing to tune; :mod:`embedkit.retrieval.tuning`)
=================== ==========================================================================

>>> r = Recipe(model="m3e-small", model_identity="sha256:ab", pooling="cls", max_length=64)
>>> Recipe.from_dict(r.to_dict()) == r
True
>>> compare_recipe(r.to_dict(), {"pooling": "last-avg", "max_length": "64", "post": None})
[RecipeConflict(key='pooling', stored='cls', requested='last-avg')]
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from embedkit.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where an encoder is used
    from embedkit.encoders.pooling import Pooling
    from embedkit.encoders.protocol import SentenceEncoder
    from embedkit.store.fitted import FittedPost

__all__ = ["POST_FILE", "Count", "Positive", "Recipe",
           "RecipeConflict", "RecipeConflictError", "compare_recipe", "make_recipe",
           "post_metadata", "show_value", "validate_json"]

#: the fitted post-processor's map beside the vectors (index and encode folders alike)
POST_FILE = "post.safetensors"

#: keys a recipe must hold for a folder to be searched or grown
_REQUIRED_KEYS = ("model", "model_identity", "pooling", "max_length")


def show_value(value: Any) -> str:
    """A recipe value as messages show it: None -> "none", JSON for dicts and lists.

    >>> show_value(None), show_value({"b": 1}), show_value(64)
    ('none', '{"b": 1}', '64')
    """
    if value is None:
        return "none"
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


@dataclass(frozen=True)
class RecipeConflict:
    """A setting asked for (``requested``) that differs from the recipe's (``stored``).

    >>> RecipeConflict("pooling", "cls", "last-avg").describe()
    'index was built with pooling=cls but pooling=last-avg was given'
    >>> RecipeConflict("max_length", 64, 32).describe(given="a max length of 32")
    'index was built with max_length=64 but a max length of 32 was given'
    """

    key: str
    stored: Any
    requested: Any

    def describe(self, given: str | None = None) -> str:
        """One sentence; ``given`` says how the requested value was given (default key=value)."""
        given = given or f"{self.key}={show_value(self.requested)}"
        return f"index was built with {self.key}={show_value(self.stored)} but {given} was given"


class RecipeConflictError(ConfigError):
    """Settings that differ from an index's recipe; :attr:`conflicts` lists them."""

    def __init__(self, conflicts: list[RecipeConflict]):
        self.conflicts = list(conflicts)
        super().__init__("; ".join(c.describe() for c in self.conflicts)
                         + "; use the index's recipe or force=True", param="force")


def compare_recipe(stored: Mapping[str, Any], requested: Mapping[str, Any]) -> list[RecipeConflict]:
    """The requested settings that differ from ``stored`` (a recipe dict).

    ``None`` in ``requested`` means "not given" and is skipped. A key stored as None means
    "none" (e.g. no post-processor) and does conflict with a given value. Values equal as
    strings agree (``"64"`` and ``64``). A key the recipe does not record cannot be checked:
    it only warns.
    """
    conflicts: list[RecipeConflict] = []
    for key, value in requested.items():
        if value is None:
            continue
        if key not in stored:
            warnings.warn(f"the index recipe does not record {key}; cannot check "
                          f"{key}={show_value(value)}", stacklevel=3)
            continue
        have = stored[key]
        if have == value or (have is not None and str(have) == str(value)):
            continue
        conflicts.append(RecipeConflict(key, have, value))
    return conflicts


#: what a failed check says the value should have been, by pydantic error type
_EXPECTED = {"int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
             "bool_type": "true or false", "bool_parsing": "true or false",
             "string_type": "a string", "float_type": "a number", "dict_type": "a JSON object",
             "list_type": "a JSON list", "greater_than_equal": "a count (an integer >= 0)"}

_M = TypeVar("_M", bound=BaseModel)
#: the integer types of the files :func:`validate_json` checks: a count (>= 0), a size (>= 1)
Count = Annotated[StrictInt, Field(ge=0)]
Positive = Annotated[StrictInt, Field(ge=1)]


def validate_json(model: type[_M], data: Any, where: str, prefix: str = "",
                  redo: str = "rebuild the index") -> _M:
    """``data`` checked against ``model``; :class:`ConfigError` naming the file (``where``) and
    the key otherwise (``prefix`` before the key: ``recipe.``; ``redo``: how to make the file
    again)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'the file'} must be a JSON object, "
                          f"not {type(data).__name__}; {redo}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = prefix + "".join(f"[{x}]" if isinstance(x, int) else f".{x}"
                               for x in err["loc"])[1:]
        if err["type"] == "missing":
            raise ConfigError(f"{where}: key {key!r} is missing; {redo}") from None
        expected = _EXPECTED.get(err["type"], err["msg"])
        if err["type"] == "greater_than_equal" and err.get("ctx", {}).get("ge") == 1:
            expected = "an integer >= 1"
        value = repr(err["input"])
        value = value if len(value) <= 60 else value[:57] + "..."
        raise ConfigError(f"{where}: key {key!r} must be {expected}, not {value}; "
                          f"{redo}") from None


class _RecipeTypes(BaseModel):
    """The types of a stored recipe's values. Lax where older folders may hold another JSON type
    for the same value (``"max_length": "32"``, ``"lowercase": "false"``); a value that cannot
    mean it (``"abc"``, ``5`` for a name) is refused."""

    model_config = ConfigDict(extra="allow")
    model: StrictStr
    model_identity: StrictStr
    pooling: StrictStr
    max_length: int
    model_path: StrictStr | None = None
    dtype: StrictStr | None = None
    lowercase: bool | None = None
    backend: StrictStr | None = None
    quantize: StrictStr | None = None
    calibration: dict[str, Any] | None = None
    prompt: str | None = None
    query_prompt: str | None = None
    post: StrictStr | None = None
    post_file: StrictStr | None = None
    post_sha256: StrictStr | None = None
    post_sources: list[dict[str, StrictStr]] | None = None
    fit: dict[str, Any] | None = None
    corpus: list[dict[str, Any]] | None = None
    search_defaults: dict[str, Any] | None = None


@dataclass(frozen=True)
class Recipe:
    """What an index folder's vectors were made with (see the module docstring for the keys).

    ``extra`` keeps keys this version does not know, so they survive a read and write.
    """

    model: str
    model_identity: str
    pooling: str
    max_length: int
    model_path: str | None = None
    dtype: str = "float32"
    lowercase: bool = False
    backend: str = "torch"
    quantize: str = "none"
    #: int8-static's calibration (``given``: as the config gave it, ``digest``: the identity's)
    calibration: dict[str, Any] | None = None
    prompt: str = ""
    query_prompt: str = ""
    post: str | None = None
    post_file: str | None = None
    post_sha256: str | None = None
    post_sources: tuple[dict[str, str], ...] = ()
    fit: dict[str, Any] | None = None
    corpus: tuple[dict[str, Any], ...] = ()
    search_defaults: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict ``index.json`` stores (the keys of earlier versions, in order)."""
        return {
            "model": self.model,
            "model_path": self.model_path,
            "model_identity": self.model_identity,
            "pooling": str(self.pooling),
            "max_length": int(self.max_length),
            "dtype": self.dtype,
            "lowercase": bool(self.lowercase),
            **self._encoder_keys(),
            "post": self.post,
            "post_file": self.post_file,
            "post_sha256": self.post_sha256,
            "post_sources": [dict(s) for s in self.post_sources],
            "fit": None if self.fit is None else dict(self.fit),
            "corpus": [dict(c) for c in self.corpus],
            **({} if self.search_defaults is None else
               {"search_defaults": dict(self.search_defaults)}),
            **self.extra,
        }

    def _encoder_keys(self) -> dict[str, Any]:
        """The backend and prompt keys, written only when not the defaults (so that folders
        built by the torch backend without prompts keep the earlier layout)."""
        keys: dict[str, Any] = {}
        if self.backend != "torch" or self.quantize != "none":
            keys.update(backend=self.backend, quantize=self.quantize)
        if self.calibration is not None:
            keys.update(calibration=dict(self.calibration))
        if self.prompt or self.query_prompt:
            keys.update(prompt=self.prompt, query_prompt=self.query_prompt)
        return keys

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "index.json") -> Recipe:
        """Read a stored recipe (``where``: the index.json it comes from, for messages); one
        without the model, identity, pooling or max length was not made by
        :func:`~embedkit.retrieval.folder.build_index`, and a value of the wrong type cannot be
        used (:class:`ConfigError` naming ``where`` and the key)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: the recipe must be a JSON object, not "
                              f"{type(data).__name__}; rebuild the index")
        missing = [k for k in _REQUIRED_KEYS if k not in data]
        if missing:
            raise ConfigError(
                f"{where}: the recipe lacks {', '.join(missing)}: it was not built by "
                "`embedkit index build`; rebuild it"
            )
        typed = validate_json(_RecipeTypes, dict(data), where, prefix="recipe.")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(
            model=typed.model,
            model_identity=typed.model_identity,
            pooling=typed.pooling,
            max_length=typed.max_length,
            model_path=typed.model_path,
            dtype=typed.dtype or "float32",
            lowercase=bool(typed.lowercase),
            backend=typed.backend or "torch",
            quantize=typed.quantize or "none",
            calibration=typed.calibration,
            prompt=typed.prompt or "",
            query_prompt=typed.query_prompt or "",
            post=typed.post,
            post_file=typed.post_file,
            post_sha256=typed.post_sha256,
            post_sources=tuple(typed.post_sources or ()),
            fit=typed.fit,
            corpus=tuple(typed.corpus or ()),
            search_defaults=typed.search_defaults,
            extra={k: v for k, v in data.items() if k not in names},
        )

    def with_corpus(self, entry: Mapping[str, Any]) -> Recipe:
        """The recipe with one more ``corpus`` entry (a build or an add)."""
        return dataclasses.replace(self, corpus=(*self.corpus, dict(entry)))


# --------------------------------------------------------------------------------------------
# the recipe of an encoder's vectors


def make_recipe(encoder: SentenceEncoder, pooling: Pooling, max_length: int,
                post: FittedPost | None, corpus: dict[str, Any],
                query_prompt: str | None = None) -> Recipe:
    """The recipe of ``encoder``'s vectors (``query_prompt`` None: the passages' prompt)."""
    d = encoder.describe()
    prompt = str(d.get("prompt") or "")
    return Recipe(
        model=encoder.name, model_path=d.get("path", getattr(encoder, "path", None)),
        model_identity=str(d.get("identity") or encoder.identity), pooling=str(pooling),
        max_length=int(max_length), dtype=str(d.get("dtype", "float32")),
        lowercase=bool(d.get("lowercase", False)), backend=str(d.get("backend", "torch")),
        quantize=str(d.get("quantize", "none")), prompt=prompt,
        calibration=_calibration_keys(d.get("calibration")),
        query_prompt=prompt if query_prompt is None else query_prompt,
        post=post.spec if post else None, post_file=POST_FILE if post else None,
        post_sources=post.sources if post else (), fit=post.fit if post else None,
        corpus=(corpus,))


def _calibration_keys(record: Any) -> dict[str, Any] | None:
    """What a recipe keeps of an encoder's int8-static calibration: enough to build the same
    encoder again (``given``) and to check it is the same (``digest``, ``sha256``)."""
    if not isinstance(record, Mapping):
        return None
    return {k: record.get(k) for k in ("given", "digest", "source", "sha256")}


def post_metadata(post: FittedPost, recipe: Recipe) -> dict[str, Any]:
    """What ``post.safetensors`` records beside the map of ``post`` under ``recipe``."""
    fit = post.fit or {}
    return {"model": recipe.model_identity, "model_identity": recipe.model_identity,
            "model_name": recipe.model, "pooling": recipe.pooling,
            "max_length": recipe.max_length, "spec": post.spec, "normalize": post.map.normalize,
            "fit_on": fit.get("on"), "n_samples": fit.get("n_sentences"),
            "fit_data_sha256": fit.get("sha256")}
