"""Compare spiking files written before and after a change: same nodes, attributes, weights, metadata.

Byte equality is too strict across dialect versions (the version is stamped in the file, and
dialect 2 moved the max-pool gate into the onnx2snn domain), so the files are compared as values.
Prints one line per file and exits 1 when any differs.

    python scripts/compare_spiking_files.py BEFORE_DIR AFTER_DIR snn1.onnx snn2.onnx ...
"""
from __future__ import annotations

import sys

import numpy as np
import onnx
from onnx import numpy_helper

IGNORED_METADATA = {"onnx2snn.dialect_version"}


def summary(path: str) -> tuple[list, dict, dict]:
    model = onnx.load(path)
    nodes = [(n.name, n.op_type, list(n.input), list(n.output),
              {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}) for n in model.graph.node]
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    metadata = {p.key: p.value for p in model.metadata_props if p.key not in IGNORED_METADATA}
    return nodes, weights, metadata


def differences(before: str, after: str) -> list[str]:
    (nodes_a, weights_a, meta_a), (nodes_b, weights_b, meta_b) = summary(before), summary(after)
    found = [] if len(nodes_a) == len(nodes_b) else [f"{len(nodes_a)} nodes before, {len(nodes_b)} after"]
    for a, b in zip(nodes_a, nodes_b, strict=False):  # a length mismatch is reported above
        if a[:4] != b[:4] or set(a[4]) != set(b[4]):
            found.append(f"node {a[0]!r} ({a[1]}) differs in its inputs, outputs or attribute names")
            continue
        for key, value in a[4].items():
            if not np.array_equal(np.asarray(value), np.asarray(b[4][key])):
                found.append(f"node {a[0]!r}: attribute {key} differs")
    if set(weights_a) != set(weights_b):
        found.append("different initializer names")
    found += [f"initializer {k!r} differs" for k in weights_a if k in weights_b and
              not np.array_equal(weights_a[k], weights_b[k])]
    if meta_a != meta_b:
        found.append(f"metadata differs: {sorted(set(meta_a.items()) ^ set(meta_b.items()))}")
    return found


def main() -> int:
    before, after, *names = sys.argv[1:]
    failed = False
    for name in names:
        found = differences(f"{before}/{name}", f"{after}/{name}")
        print(f"{name}: {'identical values' if not found else 'DIFFERENT'}")
        for line in found[:10]:
            print(f"    {line}")
        failed |= bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
