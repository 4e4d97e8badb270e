"""Prompts (prefixes) put before each sentence, as sentence-transformers applies them: the
prompt is prepended to the text and tokenised with it (E5-style models expect ``"query: "``).

A model folder may declare its prompts in ``config_sentence_transformers.json``
(``{"prompts": {"query": "query: ", ...}, "default_prompt_name": "query"}``); the default prompt
is used when none is given, and ``query`` / ``passage`` (or ``document``) ones are the per-side
defaults of retrieval.

>>> import json, tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "config_sentence_transformers.json").write_text(json.dumps(
...     {"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None}))
>>> declared_prompts(d)
{'query': 'query: ', 'passage': 'passage: '}
>>> resolve_prompt(None, str(d)), resolve_prompt("q: ", str(d))
('', 'q: ')
>>> side_prompts(str(d), query=None, passage=None, prompt=None)
('query: ', 'passage: ')

An *instruction* (a task description, for decoder embedders such as Qwen3-Embedding or
gte-Qwen2) becomes a prompt through a template: the one the folder's declared ``query`` prompt
shows (``"Instruct: <task>\\nQuery:"`` with the task replaced), else
:data:`INSTRUCTION_TEMPLATE`. Queries (and both sentences of a symmetric task such as STS) get
it; documents get nothing (or the folder's declared document prompt).

>>> instruction_prompt("Retrieve semantically similar text.", None)
'Instruct: Retrieve semantically similar text.\\nQuery: '
>>> side_prompts(None, query=None, passage=None, prompt=None, instruction="Find answers")
('Instruct: Find answers\\nQuery: ', '')
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from embedkit.errors import ConfigError

logger = logging.getLogger(__name__)
ST_CONFIG = "config_sentence_transformers.json"
_PASSAGE_NAMES = ("passage", "document", "doc", "corpus")
#: the instruction template of e5-mistral and gte-Qwen2's cards (the text follows it)
INSTRUCTION_TEMPLATE = "Instruct: {instruction}\nQuery: "
_INSTRUCT = re.compile(r"^Instruct:[ ]?(?P<task>[^\n]*)\n(?P<tail>Query:[ ]?)$")


def st_config(folder: str | Path | None) -> dict[str, Any]:
    """The folder's ``config_sentence_transformers.json`` as a dict (empty when it has none)."""
    if folder is None:
        return {}
    path = Path(folder) / ST_CONFIG
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); fix or remove it",
                          param="model") from None
    return data if isinstance(data, dict) else {}


def declared_prompts(folder: str | Path | None) -> dict[str, str]:
    """The prompts a model folder declares, by name (empty when it declares none)."""
    prompts = st_config(folder).get("prompts") or {}
    return {str(k): str(v) for k, v in prompts.items()} if isinstance(prompts, dict) else {}


def default_prompt(folder: str | Path | None) -> str:
    """The folder's default prompt (``default_prompt_name``), or ``""``."""
    cfg = st_config(folder)
    name = cfg.get("default_prompt_name")
    return declared_prompts(folder).get(str(name), "") if name else ""


def resolve_prompt(prompt: str | None, folder: str | Path | None) -> str:
    """The prompt to use: the given one (``""`` = none), else the folder's default."""
    if prompt is not None:
        return prompt
    local = folder if folder is not None and Path(folder).is_dir() else None
    return default_prompt(local)


def instruction_template(folder: str | Path | None) -> str | None:
    """The instruction template a model folder declares through its ``query`` prompt
    (``"Instruct: <task>\\nQuery:"``, Qwen3-Embedding's and gte-Qwen2's), or None."""
    local = folder if folder is not None and Path(folder).is_dir() else None
    m = _INSTRUCT.match(declared_prompts(local).get("query", ""))
    return None if m is None else "Instruct: {instruction}\n" + m.group("tail")


def instruction_prompt(instruction: str, folder: str | Path | None) -> str:
    """The prompt an instruction makes, in the folder's template or the default one."""
    if not instruction.strip():
        raise ConfigError("the instruction is empty; give the task in words, e.g. \"Retrieve "
                          "semantically similar text.\"", param="instruction")
    template = instruction_template(folder) or INSTRUCTION_TEMPLATE
    return template.replace("{instruction}", instruction.strip())


def side_prompts(folder: str | Path | None, *, query: str | None, passage: str | None,
                 prompt: str | None, instruction: str | None = None) -> tuple[str, str]:
    """The query and passage prompts of a retrieval run: each given one, else the
    ``instruction``'s prompt for queries and nothing for passages, else ``prompt``, else the
    folder's declared ``query`` / ``passage`` (or ``document``) prompt, else its default."""
    local = folder if folder is not None and Path(folder).is_dir() else None
    declared = declared_prompts(local)
    if instruction:
        if prompt is not None:
            raise ConfigError("give an instruction or a prompt, not both (the instruction "
                              "makes the queries' prompt)", param="instruction")
        names = [n for n in _PASSAGE_NAMES if n in declared]
        return (query if query is not None else instruction_prompt(instruction, local),
                passage if passage is not None else declared[names[0]] if names else "")
    fallback = prompt if prompt is not None else None
    q = query if query is not None else fallback
    p = passage if passage is not None else fallback
    if q is None:
        q = declared.get("query", default_prompt(local))
    if p is None:
        names = [n for n in _PASSAGE_NAMES if n in declared]
        p = declared[names[0]] if names else default_prompt(local)
    return q, p


def prompt_length(tokenizer: Any, prompt: str) -> int:
    """How many tokens of a prompted text are the prompt's, as sentence-transformers counts them
    for ``include_prompt=False``: the prompt tokenised alone, without its trailing special token
    (``[CLS] query : [SEP]`` -> 3). 0 for no prompt.
    """
    if not prompt:
        return 0
    ids = list(tokenizer([prompt], padding=False, truncation=False)["input_ids"][0])
    special = set(getattr(tokenizer, "all_special_ids", ()) or ())
    return len(ids) - 1 if ids and ids[-1] in special else len(ids)
