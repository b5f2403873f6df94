"""Reading a `SourcePlan`'s inputs with Ray Data, in order, with memory that does not grow with a
file's size; and the column check that runs before any of it.

Ray Data's own readers serve parquet and csv (row groups and blocks stream). JSON lines get a
reader of ours: Ray's `read_json` loads a whole file into one buffer before parsing it, and
`pyarrow.json.open_json` parses the same file in fixed-size blocks. Source "text" reads one
document per file. Hub datasets stream through `datasets` (`load_dataset(..., streaming=True)`),
one read task per group of the dataset's own shards (its files). Every block carries the path of
the file it came from (`path`), which is how file mode knows a row's domain and a column-mode
source with a validation file knows its split.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
import ray.data
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, FileBasedDatasource, ReadTask

from acodm_ray.data.corpus_errors import CorpusError, MissingColumnError
from acodm_ray.data.sources import SourceInput, SourcePlan

JSON_BLOCK_BYTES = 8 << 20  # parse JSON lines 8 MB at a time
# CPUs a read task reserves: a fraction, so a read and a tokenizer actor fit together on a 1- or
# 2-CPU node (whole CPUs for both wait forever there: "pending: 2 CPU"); parsing is cheap next to
# tokenizing, and Ray Data's backpressure keeps reads from running ahead of the actors
READ_CPUS = 0.25
HUB_BATCH_ROWS = 1000


class JSONLinesDatasource(FileBasedDatasource):
    """JSON lines parsed block by block (`pyarrow.json.open_json`): memory stays flat however
    large the file (Ray's `read_json` parses a whole file from one buffer)."""

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        options = pajson.ReadOptions(use_threads=False, block_size=JSON_BLOCK_BYTES)
        try:
            for batch in pajson.open_json(f, read_options=options):
                yield pa.Table.from_batches([batch])
        except pa.ArrowInvalid as err:
            raise CorpusError(f"{path} is not valid JSON lines: {err}") from err


class WholeTextDatasource(FileBasedDatasource):
    """Source "text": one file is one document (code files and chapters stay whole)."""

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        yield pa.table({"text": [f.read().decode("utf-8", errors="replace")]})


class HubStreamDatasource(Datasource):
    """A `datasets.IterableDataset` (hub or local builder, streaming), read in order: one read task
    per contiguous group of its shards. Ray's `from_huggingface` would first ask the hub's API for
    parquet files over the network, which local and offline runs cannot do."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit=None, data_context=None
    ) -> list[ReadTask]:
        n = max(1, min(int(parallelism), int(getattr(self.dataset, "num_shards", 1) or 1)))
        meta = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
        return [ReadTask(_hub_reader(self.dataset, n, i), meta) for i in range(n)]


def _hub_reader(dataset: Any, num_shards: int, index: int):
    def read() -> Iterator[pa.Table]:
        part = (
            dataset.shard(num_shards=num_shards, index=index, contiguous=True)
            if num_shards > 1
            else dataset
        )
        for batch in part.with_format("arrow").iter(batch_size=HUB_BATCH_ROWS):
            yield batch if isinstance(batch, pa.Table) else pa.Table.from_pydict(batch)

    return read


# ------------------------------------------------------------------------------- datasets


def read_inputs(plan: SourcePlan, inputs: list[SourceInput]) -> ray.data.Dataset:
    """One Ray dataset over `inputs` (all of one split), rows in input order, with a `path` column."""
    paths = [i.path for i in inputs]
    files = {"include_paths": True, "file_extensions": None}
    if plan.format == "hub":
        (item,) = inputs  # one split of the dataset (None: its train split, split by the router)
        source = HubStreamDatasource(open_hub_split(plan, item.split or "train"))
        return ray.data.read_datasource(source, num_cpus=READ_CPUS)
    if plan.format == "json":
        return ray.data.read_datasource(JSONLinesDatasource(paths, **files), num_cpus=READ_CPUS)
    if plan.format == "text":
        return ray.data.read_datasource(WholeTextDatasource(paths, **files), num_cpus=READ_CPUS)
    if plan.format == "parquet":
        return ray.data.read_parquet(paths, **files, num_cpus=READ_CPUS)
    if plan.format == "csv":
        return ray.data.read_csv(paths, **files, num_cpus=READ_CPUS)
    raise CorpusError(f"no reader for format {plan.format!r}")


def mapped_blocks(plan: SourcePlan, inputs: list[SourceInput], fn, **kwargs) -> Iterator[pa.Table]:
    """`fn(block, **kwargs)` over every block of `inputs`, in order, as light tasks (the driver's
    passes that do not encode: the tokenizer's text, the domain names of an error message)."""
    ds = read_inputs(plan, inputs).map_batches(
        fn, fn_kwargs=kwargs, batch_format="pyarrow", batch_size=None, num_cpus=READ_CPUS
    )
    yield from ds.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=2)


def open_hub_split(plan: SourcePlan, split: str | None) -> Any:
    """`datasets.load_dataset(name, split=split, streaming=True)` (downloads only what is read)."""
    # lazy: datasets imports slowly, and only the hub source needs it
    from datasets import load_dataset

    kwargs: dict[str, Any] = {"streaming": True, "split": split}
    if plan.hub.get("data_files"):
        kwargs["data_files"] = plan.hub["data_files"]
    if plan.hub.get("trust_remote_code"):  # only ever passed when the user asked for it
        kwargs["trust_remote_code"] = True
    try:
        return load_dataset(plan.hub["name"], **kwargs)
    except ValueError as err:
        raise CorpusError(
            f"hub dataset {plan.hub['name']!r} has no {split!r} split: {err}"
        ) from err


# ------------------------------------------------------------------------------- column check


def check_columns(plan: SourcePlan) -> None:
    """Before any worker starts: the text column (and the domain column, in column mode) exists
    in the first file of each split and each domain, dotted names through nested fields."""
    needed = [plan.text_column] + ([plan.domain_column] if plan.domain_column else [])
    if plan.format == "text":
        return
    firsts: dict[Any, SourceInput] = {}
    for item in plan.inputs:
        firsts.setdefault((item.split, item.domain), item)
    for item in firsts.values():
        schema = first_schema(plan, item)
        if schema is None:
            continue  # an empty file: the prepare reports a domain or source without documents
        for name in needed:
            if not has_column(schema, name):
                raise MissingColumnError(
                    f"column {name!r} not found in {item.path}; available columns: "
                    f"{', '.join(flat_columns(schema))}"
                )


def first_schema(plan: SourcePlan, item: SourceInput) -> pa.Schema | None:
    """The schema of an input's first rows, read with pyarrow alone (no Ray)."""
    if plan.format == "parquet":
        return pq.read_schema(item.path)
    if plan.format == "csv":
        return pacsv.open_csv(item.path).schema
    if plan.format == "hub":
        first = next(iter(open_hub_split(plan, item.split or "train").take(1)), None)
        return None if first is None else pa.Table.from_pylist([first]).schema
    with pa.input_stream(item.path, compression="detect") as f:
        options = pajson.ReadOptions(use_threads=False, block_size=1 << 20)
        try:
            return pajson.open_json(f, read_options=options).schema
        except pa.ArrowInvalid as err:
            if "Empty" in str(err) or "empty" in str(err):
                return None
            raise CorpusError(f"{item.path} is not valid JSON lines: {err}") from err


def has_column(schema: pa.Schema, dotted: str) -> bool:
    head, *rest = dotted.split(".")
    if head not in schema.names:
        return False
    kind = schema.field(head).type
    for key in rest:
        if not pa.types.is_struct(kind) or kind.get_field_index(key) < 0:
            return False
        kind = kind.field(key).type
    return True


def flat_columns(schema: pa.Schema) -> list[str]:
    """Column names, nested struct fields as dotted paths (for error messages)."""
    names: list[str] = []

    def walk(prefix: str, kind: pa.DataType) -> None:
        names.append(prefix)
        if pa.types.is_struct(kind):
            for i in range(kind.num_fields):
                walk(f"{prefix}.{kind.field(i).name}", kind.field(i).type)

    for f in schema:
        if f.name != "path":
            walk(f.name, f.type)
    return names
