"""Fault probes of ``structlayers.replace``: shared modules, tied weights, Transformer fast paths."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from structlayers import StructuredLinear, replace
from structlayers.surgery import UnsupportedModuleError


class SharedModule(nn.Module):
    """``self.b = self.a``: one module under two names."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = self.a
        self.c = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.b(torch.relu(self.a(x))))


def test_a_shared_module_is_replaced_once_under_every_name() -> None:
    model, report = replace(SharedModule(), "acdc", depth=2)
    assert isinstance(model.a, StructuredLinear) and model.b is model.a
    assert report.names == ["a", "c"] and report.replaced[0].aliases == ["b"]
    assert report.total_params_after == sum(p.numel() for p in model.parameters())
    assert model(torch.randn(3, 8)).shape == (3, 8)


class TiedHead(nn.Module):
    """An embedding and an output head sharing one weight (as in language models)."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(10, 8)
        self.head = nn.Linear(8, 10, bias=False)
        self.head.weight = self.embedding.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(tokens))


def test_a_head_tied_to_an_embedding_is_not_untied() -> None:
    with pytest.raises(UnsupportedModuleError, match="head .*shared with embedding, which would be untied"):
        replace(TiedHead(), "acdc", on_unsupported="error")
    with pytest.warns(UserWarning, match="shared with embedding"):
        model, report = replace(TiedHead(), "acdc")
    assert model.head.weight is model.embedding.weight and report.replaced == []


class TiedLinears(nn.Module):
    """``lin2.weight = lin1.weight``; ``same_bias`` ties the biases too (two names for one map)."""

    def __init__(self, same_bias: bool) -> None:
        super().__init__()
        self.lin1 = nn.Linear(8, 8)
        self.lin2 = nn.Linear(8, 8)
        self.lin2.weight = self.lin1.weight
        if same_bias:
            self.lin2.bias = self.lin1.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(torch.relu(self.lin1(x)))


def test_tied_copies_share_one_replacement() -> None:
    model, report = replace(TiedLinears(same_bias=True), "acdc")
    assert model.lin1 is model.lin2 and report.replaced[0].aliases == ["lin2"]


def test_a_weight_tied_with_separate_biases_is_refused() -> None:
    with pytest.raises(UnsupportedModuleError, match="lin1 .*shared with lin2"):
        replace(TiedLinears(same_bias=False), "acdc", on_unsupported="error")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _ = replace(TiedLinears(same_bias=False), "acdc")
    assert model.lin2.weight is model.lin1.weight


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_transformer_encoder_layer_runs_its_replacements_in_train_and_eval(mode: str) -> None:
    """torch's inference fast path reads ``linear1.weight`` directly; it must call the replacement."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self_attn.out_proj is read by nn.MultiheadAttention: skipped
        model, report = replace(layer, "acdc", depth=2)
    assert report.names == ["linear1", "linear2"]
    x = torch.randn(3, 5, 16)
    h = model.norm1(x + model._sa_block(x, None, None))  # the regular (post-norm) path, written out
    reference = model.norm2(h + model.linear2(torch.relu(model.linear1(h))))
    model.train(mode == "train")
    with torch.no_grad():
        y = model(x)
    torch.testing.assert_close(y, reference.detach(), atol=1e-5, rtol=1e-5)


def test_transformer_encoder_nested_tensor_path_calls_the_replacements() -> None:
    torch.manual_seed(0)
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True), 2,
                                    enable_nested_tensor=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _ = replace(encoder, "acdc", depth=2)
    x = torch.randn(3, 5, 16)
    padding = torch.zeros(3, 5, dtype=torch.bool)
    padding[:, 3:] = True
    trained = model(x, src_key_padding_mask=padding)
    model.eval()
    with torch.no_grad():
        inferred = model(x, src_key_padding_mask=padding)
    torch.testing.assert_close(inferred[:, :3], trained[:, :3].detach(), atol=1e-5, rtol=1e-5)
