"""Contract test over every registered model (timm-style: the registry is the test list)."""
import pytest
import torch

from advrbd.errors import BadInputError
from advrbd.io import load_state_dict, save_state_dict
from advrbd.models import MODELS, create_model


@pytest.mark.parametrize("name", MODELS.names())
def test_model_contract(name, tmp_path):
    width = 0.25 if name in ("resnet18", "resnet34", "mobilenetv2") else None
    m = create_model(name, num_classes=7, width=width)
    x = torch.rand(2, 3, 32, 32)  # [0,1] input, normalization inside
    m.eval()
    out = m(x)
    assert out.shape == (2, 7)
    feats = m.features(x)
    assert feats.ndim == 2 and feats.shape[1] == m.head.in_features
    assert torch.allclose(m.head(feats), out, atol=1e-5)
    m.train()
    m(torch.rand(4, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    save_state_dict(tmp_path / "m.safetensors", m.state_dict())
    m2 = create_model(name, num_classes=7, width=width)
    m2.load_state_dict(load_state_dict(tmp_path / "m.safetensors"))
    m.eval(), m2.eval()
    assert torch.equal(m(x), m2(x))


@pytest.mark.parametrize("name", ["tiny", "fastnet", "resnet18"])
def test_other_sizes_and_channels(name):
    m = create_model(name, num_classes=43, width=0.25, in_channels=1).eval()
    assert m(torch.rand(2, 1, 64, 64)).shape == (2, 43)


def test_normalization_is_inside_the_model():
    m = create_model("tiny")
    assert torch.allclose(m.normalize(torch.full((1, 3, 2, 2), 0.4914))[0, 0], torch.zeros(2, 2), atol=1e-4)


def test_width_scales_parameters():
    small = sum(p.numel() for p in create_model("resnet18", width=0.25).parameters())
    big = sum(p.numel() for p in create_model("resnet18", width=0.5).parameters())
    assert 3 < big / small < 5


def test_user_model_and_errors():
    m = create_model("tests.user_model:make", num_classes=3)
    assert m(torch.rand(1, 3, 8, 8)).shape == (1, 3)
    with pytest.raises(BadInputError):
        create_model("no_such_module_xyz:make")
    with pytest.raises(BadInputError, match="unknown model"):
        create_model("nope")
