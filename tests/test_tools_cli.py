"""The everyday tools through the command line: inspect, inspect --diff, evaluate --stats/--plot,
config files, --json/--quiet/--help and the errors that say what to do next."""
import json
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import onnx
import pytest
from onnx import helper

from helpers import make_model, small_cnn, tensor

MEAN, STD = "0.5,0.5,0.5", "0.25,0.25,0.25"


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "onnx2snn", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300, check=False)


def ok(result):
    assert result.returncode == 0, result.stderr
    return result


def one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("onnx2snn: error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def bn_cnn(tmp_path_factory):
    path = tmp_path_factory.mktemp("ann") / "bn_cnn.onnx"
    onnx.save(small_cnn(np.random.default_rng(5), batchnorm=True), str(path))
    return path


@pytest.fixture(scope="module")
def snn_pair(tmp_path_factory, bn_cnn, tiny_images):
    """The BN CNN converted with per-channel max thresholds, soft and hard reset."""
    folder = tmp_path_factory.mktemp("snn")
    paths = {}
    for reset in ("subtract", "zero"):
        paths[reset] = folder / f"snn_{reset}.onnx"
        ok(cli("convert", bn_cnn, "-o", paths[reset], "--data", tiny_images, "--mean", MEAN, "--std", STD,
               "--threshold", "max+channel", "--calib", 20, "--reset", reset, "-q"))
    return paths


# -- inspect ------------------------------------------------------------------------------------

def test_inspect_ann_rows_show_what_normalization_did(bn_cnn):
    text = ok(cli("inspect", bn_cnn)).stdout
    rows = {line.split()[0]: line for line in text.splitlines() if line.split() and line.split()[0] in
            ("conv1", "bn1", "relu1", "pool1", "fc")}
    assert "folded into Conv 'conv1'" in rows["bn1"]
    assert "kept, absorbs bn1" in rows["conv1"]
    assert "replaced by an IF neuron" in rows["relu1"]
    assert "8x8x8" in rows["conv1"] and "13.8k" in rows["conv1"]  # 8*8*8 outputs x 27 products
    assert "convertible, 2 spiking layers" in text
    assert "9 layers, 930 parameters, 23,760 MACs per image, opset ai.onnx 13" in text


def test_inspect_json_has_the_same_data(bn_cnn):
    info = json.loads(ok(cli("inspect", bn_cnn, "--json")).stdout)
    rows = {row["name"]: row for row in info["rows"]}
    assert info["kind"] == "ann" and info["convertible"] is True
    assert rows["bn1"]["fate"] == "folded into Conv 'conv1'" and rows["bn1"]["target"] == "conv1"
    assert rows["conv1"]["macs"] == 8 * 8 * 8 * 27 and rows["conv1"]["parameters"] == 8 * 27 + 8
    assert rows["fc"]["macs"] == 80 and rows["pool1"]["output_shape"] == [1, 8, 4, 4]
    assert info["macs"] == sum(r["macs"] for r in info["rows"])


def test_inspect_names_why_an_op_is_unsupported(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Sigmoid", ["c"], ["s"], name="sig"),
             helper.make_node("Relu", ["s"], ["y"], name="relu")]
    path = tmp_path / "sigmoid.onnx"
    onnx.save(make_model(nodes, [tensor("x", [1, 1, 4, 4])], [tensor("y", [1, 2, 4, 4])],
                         {"w": np.ones((2, 1, 1, 1), np.float32)}), str(path))
    result = ok(cli("inspect", path))
    assert "NOT convertible" in result.stdout
    sig = next(line for line in result.stdout.splitlines() if line.startswith("sig "))
    assert "UNSUPPORTED: Sigmoid is not ReLU-like" in sig
    relu = next(line for line in result.stdout.splitlines() if line.startswith("relu "))
    assert "UNSUPPORTED" not in relu


def test_inspect_spiking_file_summarizes_neurons(snn_pair):
    text = ok(cli("inspect", snn_pair["subtract"])).stdout
    relu1 = next(line for line in text.splitlines() if line.startswith("relu1 "))
    assert "(8 ch)" in relu1 and "soft reset" in relu1 and "±" in relu1
    threshold = relu1.split("θ=")[1].split(" ")[0]
    assert len(threshold.replace(".", "")) <= 5  # 4 significant digits, not full float precision
    assert "onnx2snn.calibration_timesteps" not in text  # max does not simulate
    assert "hard reset" in ok(cli("inspect", snn_pair["zero"])).stdout
    info = json.loads(ok(cli("inspect", snn_pair["subtract"], "--json")).stdout)
    neuron = next(r for r in info["rows"] if r["name"] == "relu1")["neuron"]
    assert neuron["channels"] == 8 and neuron["reset"] == "soft"


def test_inspect_diff_lines_the_graphs_up(bn_cnn, snn_pair):
    text = ok(cli("inspect", "--diff", bn_cnn, snn_pair["subtract"])).stdout
    bn = next(line for line in text.splitlines() if line.startswith("bn1 "))
    assert "folded into Conv 'conv1'" in bn and "->" not in bn
    relu = next(line for line in text.splitlines() if line.startswith("relu1 "))
    assert "-> " in relu and "onnx2snn.IF" in relu
    data = json.loads(ok(cli("inspect", "--diff", bn_cnn, snn_pair["subtract"], "--json")).stdout)
    pairs = {r["ann"]["name"]: (r["snn"] or {}).get("name") for r in data["rows"] if r["ann"]}
    assert pairs["relu1"] == "relu1" and pairs["bn1"] is None and pairs["conv1"] == "conv1"


# -- evaluate --stats / --plot --------------------------------------------------------------------

def test_evaluate_stats_and_plots(tmp_path, snn_pair, tiny_images):
    out, plots = tmp_path / "eval.json", tmp_path / "plots"
    result = ok(cli("evaluate", snn_pair["subtract"], "--data", tiny_images, "-T", "4,8", "--limit", 10,
                    "--stats", "--plot", plots, "--trace", "relu1:0,3", "--json", out))
    assert "synaptic ops" in result.stdout and "energy per image" in result.stdout
    for name in ("accuracy.png", "firing_rates.png", "accuracy_vs_sops.png", "traces.png", "plots.json"):
        assert (plots / name).is_file() and str(plots / name) in result.stdout
        if name.endswith(".png"):
            assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(out) in result.stdout
    report = json.loads(out.read_text())
    stats = report["statistics"]
    assert stats["images"] == 10 and stats["timesteps"] == 8
    assert stats["sops_per_image"] == pytest.approx(sum(layer["sops"] for layer in stats["layers"]))
    assert stats["sops_by_t"]["8"] == pytest.approx(stats["sops_per_image"])
    assert stats["sops_by_t"]["4"] <= stats["sops_by_t"]["8"]
    for layer in stats["layers"]:
        assert sum(layer["histogram"]) == layer["neurons"]
        assert layer["sops"] == pytest.approx(layer["spikes"] * layer["fanout"])
    data = json.loads((plots / "plots.json").read_text())
    label = next(iter(data["firing_rates"]))
    assert data["firing_rates"][label]["rates"] == [layer["rate"] for layer in stats["layers"]]
    assert data["accuracy_vs_sops"][label]["sops"] == [stats["sops_by_t"]["4"], stats["sops_by_t"]["8"]]
    assert list(data["accuracy"]) == ["soft reset"]
    trace = data["traces"][label]["relu1"]["0"]
    assert len(trace["v"]) == 8 and len(trace["spikes"]) == 8


def test_soft_and_hard_reset_side_by_side(tmp_path, snn_pair, tiny_images):
    plots = tmp_path / "plots"
    result = ok(cli("evaluate", snn_pair["subtract"], snn_pair["zero"], "--data", tiny_images, "-T", "2,4",
                    "--limit", 10, "--plot", plots, "--json"))
    runs = json.loads(result.stdout)["runs"]
    assert [r["reset"] for r in runs] == ["subtract", "zero"]
    panels = json.loads((plots / "plots.json").read_text())["accuracy"]
    assert list(panels) == ["soft reset", "hard reset"]
    soft = next(iter(panels["soft reset"]["curves"].values()))
    assert soft == runs[0]["snn_accuracy"]


def test_costs_file_changes_the_energy(tmp_path, snn_pair, tiny_images):
    costs = tmp_path / "costs.toml"
    costs.write_text("[energy]\naccumulate_pj = 0.0\nmac_pj = 1.0\n")
    report = json.loads(ok(cli("evaluate", snn_pair["subtract"], "--data", tiny_images, "-T", "4", "--limit", 10,
                               "--stats", "--costs", costs, "--json", "-q")).stdout)
    stats = report["statistics"]
    assert stats["energy_uj_per_image"]["snn"] == pytest.approx(stats["static_macs_per_image"] * 1e-6)
    assert stats["energy_uj_per_image"]["ann"] == pytest.approx(stats["ann_macs_per_image"] * 1e-6)


def test_progress_only_on_a_terminal_or_when_asked(snn_pair, tiny_images):
    args = ["evaluate", snn_pair["subtract"], "--data", tiny_images, "-T", "2", "--limit", 10]
    assert "img" not in ok(cli(*args)).stderr  # stderr is a pipe here
    assert "10/10" in ok(cli(*args, "--progress")).stderr
    quiet = ok(cli(*args, "--progress", "--quiet"))
    assert quiet.stdout == "" and quiet.stderr == ""


# -- errors with next steps ---------------------------------------------------------------------

def test_an_ann_given_to_evaluate_says_convert_first(bn_cnn, tiny_images):
    line = one_line_error(cli("evaluate", bn_cnn, "--data", tiny_images, "-T", "2", "--limit", 10),
                          "is an ANN", "onnx2snn convert")
    assert "unsupported" not in line


@pytest.mark.parametrize("kind", ["zip", "pickle"])
def test_a_pytorch_checkpoint_says_how_to_export(tmp_path, tiny_images, kind):
    path = tmp_path / "model.pth"
    if kind == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", b"weights")
    else:
        path.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}, protocol=2))
    for args in (["inspect", path], ["convert", path, "-o", tmp_path / "o.onnx", "--data", tiny_images,
                                     "--mean", MEAN, "--std", STD]):
        one_line_error(cli(*args), "looks like a PyTorch checkpoint", "torch.onnx.export(")


# -- config files -------------------------------------------------------------------------------

def test_convert_config_file_flags_override_and_reproduce(tmp_path, bn_cnn, tiny_images):
    config = tmp_path / "conv.toml"
    config.write_text(f'ann = "{bn_cnn}"\ndata = "{tiny_images}"\nmean = [0.5, 0.5, 0.5]\nstd = "{STD}"\n'
                      'threshold = "max"\ncalib = 12\nreset = "zero"\n')
    first = tmp_path / "first.onnx"
    summary = json.loads(ok(cli("convert", "--config", config, "-o", first, "--reset", "subtract", "--json")).stdout)
    assert summary["config"]["reset"] == "subtract"  # the flag wins over the file
    assert summary["config"]["calib"] == 12 and summary["config"]["threshold"] == "max"
    metadata = {p.key: p.value for p in onnx.load(str(first)).metadata_props}
    assert json.loads(metadata["onnx2snn.config"]) == summary["config"]
    assert metadata["onnx2snn.reset"] == "subtract" and metadata["onnx2snn.calibration_images"] == "12"
    again = tmp_path / "again.onnx"
    ok(cli("convert", "--config", first, "-o", again, "-q"))
    assert again.read_bytes() == first.read_bytes()
    changed = tmp_path / "changed.onnx"
    ok(cli("convert", "--config", first, "-o", changed, "--calib", 13, "-q"))
    assert changed.read_bytes() != first.read_bytes()


def test_config_errors_are_one_line(tmp_path, bn_cnn):
    config = tmp_path / "bad.toml"
    config.write_text('thresold = "max"\n')
    one_line_error(cli("convert", bn_cnn, "--config", config, "-o", tmp_path / "x.onnx"), "unknown convert option",
                   "thresold")
    config.write_text("not toml [")
    one_line_error(cli("convert", "--config", config, "-o", tmp_path / "x.onnx"), "not valid TOML")
    one_line_error(cli("convert", bn_cnn, "-o", tmp_path / "x.onnx"), "--data", "--mean")


# -- help, --json, --quiet ------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["convert", "evaluate", "inspect", "ops", "demo"])
def test_help_shows_defaults_examples_and_help_for_every_option(command):
    from onnx2snn.cli.main import build_parser

    text = ok(cli(command, "--help")).stdout
    assert "example" in text and "exit status" in text
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    for action in sub._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help text"
    if command == "convert":
        for fragment in ("(default: 512)", "(default: 64)", "(default: 0)", "(default: subtract)"):
            assert fragment in " ".join(text.split())


def test_ops_json_and_quiet():
    ops = json.loads(ok(cli("ops", "--json")).stdout)
    assert any(o["op"] == "Conv" for o in ops) and any(o["op"] == "IF" for o in ops)
    assert ok(cli("ops", "--quiet")).stdout == ""


def test_usage_errors_exit_2_with_one_line():
    result = cli("evaluate")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_demo_says_what_it_does_and_names_every_file(tmp_path, monkeypatch):
    """The demo's own flow with conversion and evaluation stubbed out (the real run takes minutes)."""
    from types import SimpleNamespace

    from onnx2snn.cli import demo

    monkeypatch.setattr(demo, "cifar10_dir", lambda: tmp_path / "data")
    def fake_convert(ann, snn, *args, **kwargs):
        snn.parent.mkdir(parents=True, exist_ok=True)
        snn.write_bytes(b"stub")

    monkeypatch.setattr(demo, "convert", fake_convert)
    monkeypatch.setattr(demo, "evaluate", lambda *a, **k: SimpleNamespace(ann_accuracy=0.5, snn_accuracy={4: 0.25}))
    lines = []
    report = demo.run_demo(limit=10, timesteps=[4], out_dir=tmp_path / "out", say=lines.append)
    text = "\n".join(lines)
    written = [tmp_path / "out" / name for name in ("snn_subtract.onnx", "snn_zero.onnx", "accuracy.png", "demo.json")]
    for path in written:
        assert path.is_file() and str(path) in text
    assert report["files"] == [str(p) for p in written]
    assert "converting" in text and "evaluating" in text


def test_a_bad_trace_request_is_one_line(snn_pair, tiny_images):
    args = ["evaluate", snn_pair["subtract"], "--data", tiny_images, "-T", "2", "--limit", 10]
    one_line_error(cli(*args, "--trace", "nolayer:1"), "names no neuron layer", "relu1")
    one_line_error(cli(*args, "--trace", "relu1:100000"), "relu1:100000", "512 neurons")
    one_line_error(cli(*args, "--trace", "relu1"), "LAYER:I")
