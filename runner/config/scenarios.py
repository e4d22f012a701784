"""Scenario files (``.jsonl``, ``.csv``, ``.yaml``) and the stream of every scenario of a config.

Files may be large: they are streamed, never held, and hashed as they are read so that a file
changed after loading is noticed (``iter_scenarios`` checks it).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from runner.config.errors import (
    ConfigError,
    describe,
    did_you_mean,
    display,
    from_validation,
    os_error,
    yaml_error,
)
from runner.config.models import DICT_AXES, Config, ScenarioFileRef, ScenarioSpec


class UniqueKeyLoader(yaml.SafeLoader):
    """A second ``run:`` block would silently replace the first one: reject duplicate keys."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node)


UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,  # type: ignore[arg-type]
)


def read_bytes(path: Path, where: str, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise os_error(exc, where, what) from None


def decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text (bad byte at offset {exc.start})") from None


# ---------------------------------------------------------------------------- scenario files


_CSV_SCALARS = (
    "id",
    "first_message",
    "prompt",
    "llm",
    "temperature",
    "language",
    "new_turns_limit",
    "tags",
)


class Digest:
    """sha256 of a file as it is streamed, so a later change can be noticed."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def lines(self, path: Path, where: str) -> Iterator[tuple[int, str]]:
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise os_error(exc, where, "scenario file") from None
        with handle:
            for lineno, raw in enumerate(handle, start=1):
                self._h.update(raw)
                yield lineno, decode(raw, f"{where}:{lineno}")

    def update(self, data: bytes) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def _jsonl_rows(path: Path, where: str, digest: Digest) -> Iterator[tuple[int, Any]]:
    for lineno, text in digest.lines(path, where):
        if not text.strip():
            continue
        try:
            yield lineno, json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}:{lineno}: invalid JSON: {exc.msg}") from None


def _csv_rows(path: Path, where: str, digest: Digest) -> Iterator[tuple[int, Any]]:
    lines = digest.lines(path, where)
    texts = (text for _, text in lines)
    reader = csv.reader(texts)
    header = next(reader, None)
    if header is None:
        return
    header = [h.strip() for h in header]
    for name in header:
        head, dot, rest = name.partition(".")
        if dot and head in DICT_AXES and rest:
            continue
        if name not in _CSV_SCALARS:
            options = [*_CSV_SCALARS, "dynamic_variables.<name>", "user_dynamic_variables.<name>"]
            raise ConfigError(
                f"{where}:1: column {name!r}: unknown column{did_you_mean(name, options)}"
            )
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise ConfigError(f"{where}:1: column {dupes[0]!r}: appears twice")
    start = reader.line_num + 1
    for cells in reader:
        lineno, start = start, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise ConfigError(
                f"{where}:{lineno}: row has {len(cells)} cells but the header has {len(header)}"
            )
        row: dict[str, Any] = {}
        for name, cell in zip(header, cells, strict=True):
            if cell == "":
                continue  # an empty cell means "not set": the field's default
            head, dot, rest = name.partition(".")
            if dot:
                row.setdefault(head, {})[rest] = cell
            else:
                row[name] = cell
        yield lineno, row


def _yaml_rows(path: Path, where: str, digest: Digest) -> Iterator[tuple[int, Any]]:
    data = read_bytes(path, where, "scenario file")
    digest.update(data)
    text = decode(data, where)
    try:
        root = yaml.compose(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise yaml_error(where, exc) from None
    if root is None:
        return
    if not isinstance(root, yaml.SequenceNode):
        raise ConfigError(f"{where}: top level must be a list of scenarios")
    for node in root.value:
        loader = UniqueKeyLoader("")
        try:
            item = loader.construct_document(node)
        except yaml.YAMLError as exc:
            raise yaml_error(where, exc) from None
        yield node.start_mark.line + 1, item


def iter_file(path: Path, where: str, digest: Digest) -> Iterator[tuple[int, ScenarioSpec]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = _jsonl_rows(path, where, digest)
    elif suffix == ".csv":
        rows = _csv_rows(path, where, digest)
    else:
        rows = _yaml_rows(path, where, digest)
    for lineno, row in rows:
        if not isinstance(row, dict):
            raise ConfigError(
                f"{where}:{lineno}: a scenario must be a mapping (got {describe(row)})"
            )
        try:
            yield lineno, ScenarioSpec.model_validate(row)
        except ValidationError as exc:
            raise from_validation(f"{where}:{lineno}", exc, ScenarioSpec) from None


@dataclass(frozen=True, slots=True)
class Located:
    """A scenario and where it was written, for error messages."""

    spec: ScenarioSpec
    file: str  # the config file for inline scenarios, else the scenario file (as displayed)
    index: int  # position in the config's `scenarios` list
    line: int  # line in the scenario file; 0 for inline scenarios

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    @property
    def prefix(self) -> str:
        """Field path prefix of the scenario's own fields: "scenarios[3]." when inline."""
        return "" if self.line else f"scenarios[{self.index}]."


def iter_located(cfg: Config, *, check_unchanged: bool) -> Iterator[Located]:
    config_where = display(cfg.source_path)
    for index, entry in enumerate(cfg.scenarios):
        if isinstance(entry, ScenarioSpec):
            yield Located(entry, config_where, index, 0)
            continue
        path = cfg.resolve(entry.file)
        where = display(path)
        if not path.exists():
            raise ConfigError(
                f"{config_where}: scenarios[{index}].file: no such file {entry.file!r} "
                f"(looked for {where})"
            )
        digest = Digest()
        count = 0
        for lineno, spec in iter_file(path, where, digest):
            count += 1
            yield Located(spec, where, index, lineno)
        if count == 0:
            raise ConfigError(f"{config_where}: scenarios[{index}].file: {where} has no scenarios")
        if check_unchanged and entry._sha256 not in (None, digest.hexdigest()):
            raise ConfigError(f"{where}: changed since the config was loaded; load it again")
        entry._sha256 = digest.hexdigest()
        entry._count = count


def iter_scenarios(cfg: Config) -> Iterator[ScenarioSpec]:
    """Every scenario in config order, inline ones and file rows alike, streamed."""
    for located in iter_located(cfg, check_unchanged=True):
        yield located.spec


def file_stats(cfg: Config, ref: ScenarioFileRef) -> tuple[str, int]:
    if ref._sha256 is None or ref._count is None:
        for _ in iter_located(cfg, check_unchanged=False):
            pass
    assert ref._sha256 is not None and ref._count is not None
    return ref._sha256, ref._count


def scenario_count(cfg: Config) -> int:
    return sum(
        file_stats(cfg, s)[1] if isinstance(s, ScenarioFileRef) else 1 for s in cfg.scenarios
    )
