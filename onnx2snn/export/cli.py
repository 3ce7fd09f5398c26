"""The ``export`` and ``import`` subcommands (registered by ``cli/main.py``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._atomic import atomic_write_bytes
from ..errors import ConfigError

TARGETS = ("onnx-unrolled", "onnx-loop", "nir")


def cmd_export(args: argparse.Namespace) -> int:
    from . import _dialect

    model = _dialect.load_spiking(args.snn)
    if args.to in ("onnx-unrolled", "onnx-loop"):
        from ..onnx_io import save_model
        from .unrolled import export_unrolled

        if args.T is None:
            raise ConfigError(f"--to {args.to} needs -T (the number of timesteps to write out)")
        plain = export_unrolled(model, args.T, mode="unroll" if args.to == "onnx-unrolled" else "loop")
        save_model(plain, args.output)
        print(f"wrote {args.output}: standard ONNX, T={args.T}, {len(plain.graph.node)} nodes, outputs "
              f"{plain.graph.output[0].name} (accumulated output / T) and {len(plain.graph.output) - 1} spike counts")
        return 0
    from .nir_export import export_nir, write_nir

    if args.T is not None:
        raise ConfigError("-T applies to the ONNX exports; NIR graphs are simulated for any number of steps")
    result = export_nir(model, strict=args.strict)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    _write_atomically(args.output, lambda path: write_nir(result, path))
    print(f"wrote {args.output}: NIR graph, {len(result.graph.nodes)} nodes, {len(result.warnings)} kind(s) of "
          "semantic difference" + (" (see the warnings above)" if result.warnings else ""))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from ..onnx_io import save_model
    from .nir_import import import_nir, read_nir

    model = import_nir(read_nir(args.nir), use_metadata=not args.spec)
    save_model(model, args.output)
    neurons = sum(1 for n in model.graph.node if n.op_type == "IF")
    print(f"wrote {args.output}: spiking ONNX, {len(model.graph.node)} nodes, {neurons} IF neurons")
    return 0


def _write_atomically(path, write) -> None:
    """Write through a temporary file in the same folder, then rename (a kill leaves old or none)."""
    import os
    import tempfile

    target = Path(path)
    handle, temporary = tempfile.mkstemp(dir=target.parent or ".", prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        atomic_write_bytes(target, Path(temporary).read_bytes())
    finally:
        Path(temporary).unlink(missing_ok=True)


def add_parsers(sub) -> None:
    p = sub.add_parser("export", help="export a spiking ONNX file to standard ONNX (no custom ops) or to NIR")
    p.add_argument("snn", help="the spiking .onnx file")
    p.add_argument("--to", required=True, choices=TARGETS,
                   help="onnx-unrolled: T steps written out in standard ops (fastest in onnxruntime); onnx-loop: "
                        "one step inside an ONNX Loop (small file); nir: a NIR graph (HDF5)")
    p.add_argument("-T", type=int, help="timesteps (ONNX exports)")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--strict", action="store_true",
                   help="NIR: refuse instead of warning when NIR cannot express the graph exactly")
    p.set_defaults(run=cmd_export)

    p = sub.add_parser("import", help="import a NIR graph as a spiking ONNX file")
    p.add_argument("nir", help="the .nir file")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--spec", action="store_true",
                   help="ignore onnx2snn metadata and read the graph as the NIR spec says (as other tools do)")
    p.set_defaults(run=cmd_import)
