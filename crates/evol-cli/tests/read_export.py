"""Reads what `evol export` wrote with the libraries users load it with:
pyarrow for the Parquet files, `datasets` for the dataset directory and
its card. Run by tests/formats.rs; prints one JSON line of what it found,
and fails (exit 1) on anything wrong.

usage: read_export.py HUB_DIR MESSAGES_PARQUET DPO_PARQUET ROWS
"""

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import datasets  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from huggingface_hub import DatasetCard  # noqa: E402


def main():
    hub, messages_path, dpo_path, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    found = {}

    # The messages file: a list of {role, content} structs, zstd.
    table = pq.read_table(messages_path)
    assert table.num_rows == rows, (table.num_rows, rows)
    messages_type = table.schema.field("messages").type
    assert pa.types.is_list(messages_type), messages_type
    item = messages_type.value_type
    assert pa.types.is_struct(item) and [f.name for f in item] == ["role", "content"], item
    first = table.column("messages")[0].as_py()
    assert first[0]["role"] == "user" and first[1]["role"] == "assistant", first
    assert table.column("round").type == pa.int64()
    meta = pq.ParquetFile(messages_path).metadata
    found["compression"] = meta.row_group(0).column(0).compression
    found["messages_columns"] = table.column_names
    found["first_user_turn"] = first[0]["content"]

    # The dataset directory loads with its card, as the Hub would.
    ds = datasets.load_dataset(hub)
    train = ds["train"]
    assert train.num_rows == rows, (train.num_rows, rows)
    assert train.features["instruction"].dtype == "string"
    assert train.features["round"].dtype == "int64"
    card = DatasetCard.load(os.path.join(hub, "README.md"))
    data = card.data.to_dict()
    assert "evol-instruct" in data["tags"] and "synthetic" in data["tags"], data["tags"]
    assert data["task_categories"] == ["text-generation"], data
    assert data["annotations_creators"] == ["machine-generated"], data
    split = data["dataset_info"]["splits"][0]
    assert split["name"] == "train" and split["num_examples"] == rows, split
    found["card_size_category"] = data["size_categories"]
    found["card_configs"] = data["configs"]
    found["hub_columns"] = train.column_names
    found["hub_first"] = {k: train[0][k] for k in ("instruction", "output", "round", "operation")}

    # Preference pairs in TRL's layout.
    dpo = pq.read_table(dpo_path)
    assert dpo.column_names[:3] == ["prompt", "chosen", "rejected"], dpo.column_names
    found["dpo_rows"] = dpo.num_rows
    found["dpo_first"] = {k: dpo.column(k)[0].as_py() for k in ("prompt", "chosen", "rejected")}

    print(json.dumps(found))


if __name__ == "__main__":
    main()
