import pytest
import torch

from toolkit.checkpoint import CheckpointError, load_supernet, save_supernet
from toolkit.supernet import Supernet
from toolkit.zoo import create_model, get_arch


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    net = Supernet(num_classes=10)
    path = tmp_path_factory.mktemp("ck") / "supernet.pt"
    save_supernet(net, path)
    return net, path


def test_round_trip_and_create_model_from_supernet(ckpt):
    net, path = ckpt
    loaded = load_supernet(path)
    a = get_arch("elasticvit_s1")
    x = torch.randn(1, 3, 192, 192)
    with torch.no_grad():
        assert torch.equal(net.eval()(x, a), loaded.eval()(x, a))
        assert torch.allclose(create_model("elasticvit_s1", supernet=path).eval()(x),
                              net(x, a), atol=1e-5)
    assert not list(path.parent.glob(".*.tmp"))  # atomic write left nothing behind


def test_missing_corrupt_foreign_and_mismatched(ckpt, tmp_path):
    _, path = ckpt
    with pytest.raises(CheckpointError, match="does not exist.*evit-train"):
        load_supernet(tmp_path / "nope.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_supernet(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not an evit supernet checkpoint"):
        load_supernet(foreign)
    mism = tmp_path / "mismatch.pt"
    state = torch.load(path, weights_only=True)
    state["model"]["head.classifier.weight"] = torch.zeros(5, 3)
    torch.save(state, mism)
    with pytest.raises(CheckpointError, match="does not match"):
        load_supernet(mism)


def test_pickled_objects_are_refused(tmp_path):
    marker = tmp_path / "payload_ran"

    class Evil:
        def __reduce__(self):
            return (marker.touch, ())

    p = tmp_path / "evil.pt"
    torch.save({"format": "evit-supernet", "version": 1, "x": Evil()}, p)
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_supernet(p)
    assert not marker.exists()  # the payload never executed
