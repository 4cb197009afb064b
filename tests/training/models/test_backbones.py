"""Our GoogLeNet and ResNet-50 are torchvision's, parameter for parameter: stored weights load
unchanged and a seed gives the same start (torchvision is imported here, in the test only)."""

import pytest
import torch
from torchvision.models import googlenet, resnet50

from training.models.backbones import GoogLeNet, ResNet50

PAIRS = {
    "googlenet": (
        lambda: GoogLeNet(num_classes=1),
        lambda: googlenet(weights=None, aux_logits=False, init_weights=True, num_classes=1),
    ),
    "resnet50": (lambda: ResNet50(num_classes=1), lambda: resnet50(weights=None, num_classes=1)),
}


@pytest.mark.parametrize("arch", sorted(PAIRS))
def test_same_seed_same_weights_same_outputs(arch: str) -> None:
    ours_fn, theirs_fn = PAIRS[arch]
    torch.manual_seed(3)
    ours = ours_fn().eval()
    torch.manual_seed(3)
    theirs = theirs_fn().eval()
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
    ours.train(), theirs.train()
    torch.manual_seed(4)
    out_ours = ours(x)
    torch.manual_seed(4)
    assert torch.equal(out_ours, theirs(x))  # dropout draws the same mask too
