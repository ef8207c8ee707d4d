"""pack_weights: a CPU model's weights in one huge-page-backed buffer, nothing else changed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from tests.fixtures import random_model
from tinyseek.inference.engine import Engine, lay_out_for_decode
from tinyseek.inference.weight_arena import HUGE_PAGE, pack_weights


def huge_pages_at(address: int) -> int:
    """AnonHugePages (kB) of the mapping of this process that holds `address`."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            start, end = (int(x, 16) for x in head.split("-"))
            inside = start <= address < end
        elif inside and head == "AnonHugePages:":
            return int(line.split()[1])
    raise AssertionError(f"no mapping holds address {address:#x}")


def thp_granted() -> bool:
    path = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return path.exists() and "[never]" not in path.read_text()


def test_packing_keeps_values_layout_identity_and_outputs():
    model = random_model()
    lay_out_for_decode(model)  # input-major: views with transposed strides
    params = dict(model.named_parameters())
    before = {name: (p.detach().clone(), p.stride(), p.data_ptr()) for name, p in params.items()}
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    with torch.no_grad():
        expected = model(ids)
    moved = pack_weights(model)
    assert moved >= sum(p.nbytes for p in params.values())
    for name, p in model.named_parameters():
        value, stride, old_address = before[name]
        assert p is params[name], name  # the same Parameter object: an optimizer keeps working
        assert p.data_ptr() != old_address, name
        assert p.stride() == stride and torch.equal(p, value), name
    with torch.no_grad():
        assert torch.equal(model(ids), expected)
    assert pack_weights(model) == 0  # packed already: nothing copied again
    assert [p.data_ptr() for p in params.values()] == [p.data_ptr() for p in model.parameters()]
    # One buffer, in registration (forward) order, the first weight on a 2 MB boundary.
    assert len({p.untyped_storage().data_ptr() for p in params.values()}) == 1
    addresses = [p.data_ptr() for p in params.values()]
    assert addresses == sorted(addresses) and len(set(addresses)) == len(addresses)
    assert addresses[0] % HUGE_PAGE == 0 and addresses[-1] - addresses[0] < moved
    # Training a packed model updates the packed weights in place.
    head_address = model.lm_head.weight.data_ptr()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(ids).sum().backward()
    optimizer.step()
    assert model.lm_head.weight.data_ptr() == head_address
    assert not torch.equal(model.lm_head.weight, before["lm_head.weight"][0])


def test_tensors_sharing_a_storage_still_share_it():
    module = nn.Module()
    module.a = nn.Parameter(torch.arange(12.0).view(3, 4))
    module.b = nn.Parameter(module.a.data.t())  # tied: another view of the same storage
    module.register_buffer("row", module.a.data[1])
    pack_weights(module)
    with torch.no_grad():
        module.a[1, 2] = -1.0
    assert module.b[2, 1] == -1.0 and module.row[2] == -1.0
    assert torch.equal(module.b, module.a.t())


@pytest.mark.skipif(not thp_granted(), reason="transparent huge pages are disabled on this system")
def test_a_cpu_engine_reads_its_weights_from_huge_pages():
    model = random_model()
    Engine(model, max_model_len=64)
    # The random model's weights are under 2 MB: the buffer's first 2 MB page holds all of them.
    assert huge_pages_at(model.embed_tokens.weight.data_ptr()) >= HUGE_PAGE // 1024
