"""docs/ops.md is the registry's op table; regenerate it with `onnx2snn ops > docs/ops.md`."""
from pathlib import Path

from onnx2snn.docs import ops_table
from onnx2snn.ops import registered

DOC = Path(__file__).resolve().parents[1] / "docs" / "ops.md"


def test_docs_ops_md_is_current():
    assert DOC.read_text() == ops_table(), "docs/ops.md is out of date: run `onnx2snn ops > docs/ops.md`"


def test_table_lists_every_registered_op_once():
    table = ops_table()
    for cls in registered():
        assert table.count(f"| {cls.op_type} | {cls.domain or 'ai.onnx'} | {cls.since}+ |") == 1, cls.op_type
    assert "| MaxPool | ai.onnx | 1+ | rewritten |" in table and "| MaxPool | onnx2snn | 2+ | stateful op |" in table
    assert "| IF | onnx2snn | 1+ | neuron |" in table and "### onnx2snn.IF" in table
