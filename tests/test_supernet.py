import pytest
import torch
from conftest import randomize_norms

from toolkit.flops import params
from toolkit.space import SPACE, SearchSpace
from toolkit.supernet import StaticViT, Supernet
from toolkit.zoo import get_arch, hss_archs, list_models


def _archs():
    s = SearchSpace(seed=123)
    named = [get_arch(n) for n in ("elasticvit_t1", "elasticvit_s1", "elasticvit_l2")]
    return [SPACE.min(), SPACE.max()] + named + list(hss_archs().values())[1:] + \
        [s.sample() for _ in range(6)]


@pytest.mark.parametrize("arch", _archs(), ids=lambda a: f"r{a.resolution}")
def test_extract_equals_supernet(supernet, arch):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, arch.resolution, arch.resolution, generator=g)
    with torch.no_grad():
        y_super = supernet(x, arch)
        net = supernet.extract(arch)
        y_static = net(x)
    assert isinstance(net, StaticViT) and not net.training
    assert y_super.shape == (2, 10)
    assert (y_super - y_static).abs().max().item() <= 1e-5
    assert sum(p.numel() for p in net.parameters()) == params(arch, 10)
    # a copy, not a view: changing the subnet leaves the supernet alone
    with torch.no_grad():
        next(net.parameters()).add_(1.0)
        assert torch.equal(supernet(x, arch), y_super)


def test_forward_is_pure(supernet):
    a, b = SPACE.max(), SPACE.min()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        y1 = supernet(x, a)
        supernet(x, b)
        y2 = supernet(x, a)
    assert torch.equal(y1, y2)


def test_input_is_resized_to_the_subnet_resolution(supernet):
    a = get_arch("elasticvit_t2")  # res 160
    x = torch.randn(1, 3, 224, 224)
    x160 = torch.nn.functional.interpolate(x, size=(160, 160), mode="bicubic", align_corners=False)
    with torch.no_grad():
        assert torch.allclose(supernet(x, a), supernet(x160, a), atol=1e-6)
        assert torch.allclose(supernet.extract(a)(x), supernet(x, a), atol=1e-5)


def test_training_touches_only_the_sampled_slices():
    torch.manual_seed(0)
    net = Supernet(num_classes=10).train()
    a = SPACE.min()
    net(torch.randn(2, 3, 128, 128), a).sum().backward()
    stage = net.stages[6]  # t4, depth 1 of 6 used
    assert stage.attns[0].q.grad is not None
    assert stage.attns[1].q.grad is None and stage.ffns[5].fc1.weight.grad is None
    g = stage.attns[0].q.grad  # heads 0..9 of 20, input features 0..159 of 320
    assert g[:160, :160].abs().sum() > 0
    assert g[160:].abs().sum() == 0 and g[:, 160:].abs().sum() == 0
    # BN running stats move only for the active channels
    bn = net.first_bn
    assert torch.all(bn.running_mean[16:] == 0) and bn.running_mean[:16].abs().sum() > 0


def test_supernet_bn_train_mode_matches_static_bn():
    torch.manual_seed(1)
    sup = randomize_norms(Supernet(num_classes=10)).train()
    a = SPACE.sample(rng=4)
    net = sup.extract(a)
    assert net.training
    x = torch.randn(4, 3, a.resolution, a.resolution)
    y1, y2 = sup(x, a), net(x)
    assert torch.allclose(y1, y2, atol=1e-4)
    sd = sup.state_for(a)
    for k, v in net.state_dict().items():
        if "running" in k:
            assert torch.allclose(v, sd[k], atol=1e-6), k


def test_wrong_arch_type_is_a_clear_error(supernet):
    with pytest.raises(TypeError, match="ArchConfig"):
        supernet(torch.zeros(1, 3, 128, 128), SPACE.min().to_dict())


def test_zoo_lists_and_creates_models():
    names = list_models()
    assert names[0] == "elasticvit_t0" and names[-1] == "elasticvit_l3" and len(names) == 11
    assert list_models("elasticvit_s*") == ["elasticvit_s1", "elasticvit_s2"]
    from toolkit import create_model

    net = create_model("elasticvit_t0", num_classes=7).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 128, 128)).shape == (1, 7)
    with pytest.raises(KeyError, match="known models: elasticvit_t0"):
        create_model("resnet50")
