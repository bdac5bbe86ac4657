"""Records as Hugging Face dataset tables, and a dataset repo folder in the Hub's layout.

A psrlm record class (records.py, evaluate.SolveResult) maps to `datasets` Features field by field: str, int, float,
bool and list[str] are typed columns; a free-form field (a record's `meta`, a trace's `rounds`: nested dicts whose
keys differ by stage and version) is one column of JSON text. Parquet needs one schema per column, and datasets'
own `Json` feature writes floats with 10 significant digits (datasets 5.2), so a score of 0.12345678901 would not
read back equal; `json.loads` of the text gives back exactly what the run wrote.

`write_dataset` writes `data/<config>/<split>-00000-of-00001.parquet` and a README.md whose YAML `configs:` points
at them and whose `dataset_info:` lists features and splits, as `push_to_hub` lays a dataset out, so
`datasets.load_dataset(folder, config)` reads it offline and the Hub shows it once uploaded.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psrlm.records import from_dict


def json_fields(cls: type) -> list[str]:
    """The fields of `cls` stored as JSON text: everything that is not a scalar or a list of strings."""
    return [name for name, tp in typing.get_type_hints(cls).items() if _feature(tp) is None]


def _feature(tp: Any):
    from datasets import Sequence, Value  # Sequence: a List in datasets >= 4, and still there in 3.x

    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        tp = args[0]  # Optional[X]: a nullable X (parquet columns are nullable)
    scalars = {str: "string", int: "int64", float: "float64", bool: "bool"}
    if tp in scalars:
        return Value(scalars[tp])
    if typing.get_origin(tp) is list and typing.get_args(tp) == (str,):
        return Sequence(Value("string"))
    return None


def record_features(cls: type) -> dict:
    """{column: Feature} of `cls`, JSON-text fields as strings."""
    from datasets import Value

    return {name: _feature(tp) or Value("string") for name, tp in typing.get_type_hints(cls).items()}


def to_row(record: Any) -> dict:
    """A record as a table row: its fields, JSON-text fields dumped."""
    row = dataclasses.asdict(record)
    for name in json_fields(type(record)):
        row[name] = json.dumps(row[name], ensure_ascii=False)
    return row


def from_row(cls: type, row: dict) -> Any:
    """The record a row was made from (extra columns, such as a copy of a meta field, are ignored)."""
    names = {f.name for f in dataclasses.fields(cls)}
    obj = {k: v for k, v in row.items() if k in names}
    for name in json_fields(cls):
        if name in obj:
            obj[name] = json.loads(obj[name])
    return from_dict(cls, obj)


@dataclass
class Table:
    """One split of one config: rows plus their Features (the record's, then any extra columns)."""

    config: str
    split: str
    rows: list[dict]
    features: dict
    settings: dict = field(default_factory=dict)  # what made it, flattened: goes to the card's YAML per config


def parquet_path(config: str, split: str) -> str:
    return f"data/{config}/{split}-00000-of-00001.parquet"


def size_category(n: int) -> str:
    """The Hub's size_categories bucket for `n` rows."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M" if n < 10_000_000 else "n>10M"


def write_dataset(folder: Path, tables: list[Table], card: dict, body: str) -> dict:
    """Parquet files + README.md (YAML metadata from `card` + configs + dataset_info, then `body` in markdown).
    Returns {config: {split: rows}}. Tables with no rows are left out (a parquet split with none does not load)."""
    from datasets import Dataset, DatasetInfo, Features
    from datasets.info import DatasetInfosDict
    from datasets.splits import SplitDict, SplitInfo
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    folder = Path(folder)
    tables = [t for t in tables if t.rows]
    configs: dict[str, dict] = {}
    infos: dict[str, DatasetInfo] = {}
    for t in tables:
        features = Features(t.features)
        ds = Dataset.from_list(t.rows, features=features)
        path = folder / parquet_path(t.config, t.split)
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(path))
        files = configs.setdefault(t.config, {"data_files": []})["data_files"]
        files.append({"split": t.split, "path": f"data/{t.config}/{t.split}-*"})
        info = infos.setdefault(t.config, DatasetInfo(features=features, splits=SplitDict(), download_size=0,
                                                      dataset_size=0))  # fmt: skip
        if info.features != features:
            raise ValueError(f"{folder.name}: config {t.config} has splits with different columns")
        nbytes = ds.data.nbytes
        info.splits.add(SplitInfo(name=t.split, num_bytes=nbytes, num_examples=len(ds)))
        info.download_size += path.stat().st_size
        info.dataset_size += nbytes
    total = sum(len(t.rows) for t in tables)
    settings = {t.config: t.settings for t in tables if t.settings}
    psrlm = {**card.pop("psrlm", {}), **({"settings": settings} if settings else {})}
    data = DatasetCardData(size_categories=[size_category(total)], **card, psrlm=psrlm)
    MetadataConfigs(configs).to_dataset_card_data(data)
    DatasetInfosDict(infos).to_dataset_card_data(data)
    DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body.strip()}\n").save(folder / "README.md")
    out: dict[str, dict] = {}
    for t in tables:
        out.setdefault(t.config, {})[t.split] = len(t.rows)
    return out
