"""Pure logic of benchmarks/peer_accuracy.py and the Sinabs normalization in benchmarks/peers.py."""
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import peer_accuracy  # noqa: E402
import peers  # noqa: E402
import runtime  # noqa: E402


def test_first_t_within_takes_the_lowest_t_at_most_half_a_point_below():
    assert runtime.first_t_within({8: 0.5, 16: 0.805, 32: 0.80, 64: 0.82}, 0.81) == 16  # 0.5 points: still within
    assert runtime.first_t_within({8: 0.5, 16: 0.804, 64: 0.806}, 0.81) == 64
    assert runtime.first_t_within({8: 0.5, 16: 0.6}, 0.81) is None


def test_summarize_reports_the_best_accuracy_when_never_within():
    summary = peer_accuracy.summarize({8: 0.1, 16: 0.7, 32: 0.75, 64: 0.75}, 0.81)
    assert summary["lowest_T_within_0.5"] is None and not summary["reached"]
    assert (summary["best_accuracy"], summary["best_T"]) == (75.0, 32)  # a tie goes to the lower T
    assert peer_accuracy.summarize({8: 0.1, 16: 0.81}, 0.81)["accuracy_at_lowest_T"] == 81.0


def test_sinabs_normalization_keeps_the_logits_up_to_one_scale():
    pytest.importorskip("sinabs")
    torch.manual_seed(0)
    ann = peers.ResNet20().eval()
    with torch.no_grad():
        for module in ann.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and module.bias is not None:
                module.bias.uniform_(-0.5, 0.5)  # biases (BatchNorm folded) are what the fix is about
    x = torch.randn(6, 3, 32, 32)
    rescaled = peers.sinabs_normalized(ann, x, percentile=99.0)
    with torch.no_grad():
        before, after = ann(x), rescaled(x)
    scale = before.norm() / after.norm()
    assert torch.allclose(after * scale, before, rtol=1e-4, atol=1e-4 * before.abs().max())
