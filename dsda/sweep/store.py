"""The results store: the single source of truth of every table.

    results/store/<plan>/records/<key>.json   one record per finished job (ok or failed), written atomically
    results/store/<plan>/table.parquet        every record flattened into one table (pyarrow), rebuilt after a sweep

A record holds the metrics, ET, config, recipe, versions, commit, worker and wall time of one job, and the
`spec` its key hashes. Records are written by the client as results arrive (workers never write here, so a
killed worker cannot leave a partial file, and the store need not be shared with the cluster); a write is a
temporary file and a rename, and `remove_partial` deletes the temporary files an interrupted client leaves.
"""
from __future__ import annotations

import io
import json
import math
import warnings
from pathlib import Path
from typing import Any, Iterable

SCALARS = ("key", "kind", "plan", "status", "label", "method", "recipe", "profile", "task", "seed", "threads",
           "device", "ET_s", "ET_source", "wall_s", "run_wall_s", "eval_wall_s", "worker", "host", "pid", "commit",
           "started", "finished", "source", "synthesis_s", "synthetic_set", "error")
JSON_COLUMNS = ("forget_classes", "config", "spec", "versions")   # nested: one JSON text per cell
NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}  # how dsda.utils.to_jsonable writes them


def store_root() -> Path:
    from ..report import output_root
    return output_root() / "results" / "store"


class Store:
    """One plan's records and table (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.records_dir = self.root / "records"
        self.table_path = self.root / "table.parquet"

    @classmethod
    def for_plan(cls, plan: str, root: str | Path | None = None) -> "Store":
        """`root` given: that folder is the store; else results/store/<plan>."""
        return cls(Path(root) if root is not None else store_root() / plan)

    def path(self, key: str) -> Path:
        return self.records_dir / f"{key}.json"

    def write(self, record: dict[str, Any]) -> Path:
        from ..utils import atomic_write_json
        return atomic_write_json(self.path(record["key"]), record)

    def keys(self) -> list[str]:
        if not self.records_dir.is_dir():
            return []
        return sorted(p.stem for p in self.records_dir.glob("*.json") if not p.name.startswith("."))

    def read(self, key: str) -> dict[str, Any] | None:
        path = self.path(key)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:   # atomic writes make this rare: a hand-edited or foreign file
            warnings.warn(f"results store: unreadable record {path} ({e}); treated as not finished", RuntimeWarning)
            return None

    def records(self) -> list[dict[str, Any]]:
        return [r for r in (self.read(k) for k in self.keys()) if r is not None]

    def status(self) -> dict[str, str]:
        """key -> 'ok' / 'failed' for every readable record."""
        return {r["key"]: r["status"] for r in self.records()}

    def remove_partial(self) -> list[Path]:
        """Delete temporary files of interrupted writes (call when no sweep writes to this store)."""
        gone = [p for folder in (self.records_dir, self.root) if folder.is_dir() for p in folder.glob(".*.tmp")]
        for p in gone:
            p.unlink(missing_ok=True)
        return gone

    def table(self) -> Any:
        return flatten(self.records())

    def write_table(self) -> Path | None:
        """table.parquet from every record (atomically); None when the store holds no record."""
        from ..utils import atomic_write_bytes
        records = self.records()
        if not records:
            return None
        buf = io.BytesIO()
        flatten(records).to_parquet(buf, engine="pyarrow", index=False)
        return atomic_write_bytes(self.table_path, buf.getvalue())

    def frame(self) -> Any:
        """Every record as a DataFrame: table.parquet when it is current (or there are no records, only the
        table), else built from the records."""
        if self.table_is_current() or (self.table_path.is_file() and not self.keys()):
            import pandas as pd
            return pd.read_parquet(self.table_path, engine="pyarrow")
        return self.table()

    def table_is_current(self) -> bool:
        """table.parquet holds exactly the records on disk and none is newer."""
        if not self.table_path.is_file():
            return False
        import pyarrow.parquet as pq
        stamp = self.table_path.stat().st_mtime
        keys = self.keys()
        if any(self.path(k).stat().st_mtime > stamp for k in keys):
            return False
        return sorted(pq.read_table(self.table_path, columns=["key"]).column("key").to_pylist()) == keys


def _number(v: Any) -> Any:
    return NONFINITE.get(v, v) if isinstance(v, str) else v


def _row(record: dict[str, Any]) -> dict[str, Any]:
    row = {k: record.get(k) for k in SCALARS}
    row["forget_classes"] = record.get("forget_classes")
    for k in ("config", "spec", "versions"):
        row[k] = record.get(k)
    for name, value in (record.get("metrics") or {}).items():
        row[name] = [_number(v) for v in value] if isinstance(value, list) else _number(value)
    return row


def flatten(records: Iterable[dict[str, Any]]) -> Any:
    """A DataFrame with one row per record: the fields in SCALARS, every metric as its own column (lists, such
    as per_class_test, stay lists), the nested fields in JSON_COLUMNS as JSON text."""
    import pandas as pd
    rows = [_row(r) for r in records]
    df = pd.DataFrame(rows, columns=list(dict.fromkeys(k for r in rows for k in r))) if rows else \
        pd.DataFrame(columns=[*SCALARS, *JSON_COLUMNS])
    for col in JSON_COLUMNS:
        df[col] = [None if v is None else json.dumps(v, sort_keys=True) for v in df[col]]
    return df
