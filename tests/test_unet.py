"""The denoiser U-Net: shapes for every switch in `sr_model`, size, conditioning that matters, loud failures."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from medsr.core.config import load_params
from medsr.core.parameters import NULL_CLASS, UNetParams
from medsr.diffusion.unet import UNet, count_parameters

ROOT = Path(__file__).resolve().parents[1]

# The seed code's U-Net (SEED-CODE-NOTES.md) had about 42.4M parameters: 6 "layers" 64-128-256 down and
# 512-512-384 up, two residual blocks each, no middle block. Our U-Net is symmetric, so configs/thesis.yaml
# takes four resolution levels 64-128-256-448 (channel_mult [1, 2, 4, 7]) with two blocks per level and a
# middle block: within 5% of the seed's size.
THESIS_PARAMETERS = 41_025_665
SEED_PARAMETERS = 42_400_000


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _params(**overrides) -> UNetParams:
    values = dict(base_channels=4, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(1,), mid_attention=True,
                  out_attention=True, attention_heads=2, dropout=0.0, norm_groups=2, lr_injection="concat")
    values.update(overrides)
    return UNetParams(**values)


def _inputs(n: int = 2, height: int = 8, width: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(n, 1, height, width, generator=generator),
            "t": torch.randint(50, (n,), generator=generator),
            "class_labels": torch.arange(n) % (NULL_CLASS + 1),
            "lr_upsampled": torch.rand(n, 1, height, width, generator=generator) * 2 - 1}


def _forward(model: UNet, inputs: dict[str, torch.Tensor], **changes) -> torch.Tensor:
    values = {**inputs, **changes}
    return model(values["x"], values["t"], class_labels=values["class_labels"], lr_upsampled=values["lr_upsampled"])


@pytest.fixture(scope="module")
def model(one_thread) -> UNet:
    torch.manual_seed(0)
    return UNet(_params(channel_mult=(1, 2, 2), attention_levels=(2,))).eval()


# --- shapes -------------------------------------------------------------------------------------

MULTS = {1: (1,), 2: (1, 2), 3: (1, 2, 2)}


@pytest.mark.parametrize("levels, lr_injection, num_res_blocks",
                         list(itertools.product((1, 2, 3), ("concat", "add"), (1, 2))))
def test_output_shape_equals_input_shape_for_every_switch(levels, lr_injection, num_res_blocks):
    subsets = [tuple(lv for lv in range(levels) if mask >> lv & 1) for mask in range(2 ** levels)]
    inputs = _inputs(n=2, height=8, width=8)
    for attention_levels, mid, out, dropout in itertools.product(subsets, (False, True), (False, True), (0.0, 0.2)):
        params = _params(channel_mult=MULTS[levels], attention_levels=attention_levels, mid_attention=mid,
                         out_attention=out, dropout=dropout, num_res_blocks=num_res_blocks, lr_injection=lr_injection)
        net = UNet(params)
        attention = sum(type(m).__name__ == "SelfAttention" for m in net.modules())
        assert attention == 2 * len(attention_levels) + mid + out, params  # down + up at each level listed
        with torch.no_grad():
            output = _forward(net, inputs)
        assert output.shape == inputs["x"].shape, params
        assert torch.isfinite(output).all()


@pytest.mark.parametrize("height, width", [(8, 12), (12, 4), (4, 16)])
def test_non_square_inputs_that_are_multiples_of_size_multiple(model, height, width):
    assert model.size_multiple == 4
    inputs = _inputs(n=3, height=height, width=width)
    assert _forward(model, inputs).shape == (3, 1, height, width)


def test_thesis_model_size():
    params = load_params([ROOT / "params.yaml", ROOT / "configs" / "thesis.yaml"]).sr_model
    with torch.device("meta"):  # no memory or init time for ~41M weights
        count = count_parameters(UNet(params))
    assert count == THESIS_PARAMETERS
    assert abs(count / SEED_PARAMETERS - 1) < 0.05  # "about 42M": the thesis-size model


# --- conditioning changes the output -------------------------------------------------------------

def test_class_label_changes_the_output_through_film(model):
    inputs = _inputs(n=1)
    outputs = [_forward(model, inputs, class_labels=torch.tensor([label])) for label in (0, 1, NULL_CLASS)]
    for a, b in itertools.combinations(outputs, 2):
        assert (a - b).abs().max().item() > 1e-4
    # with the FiLM layers zeroed, the label no longer matters: the label reaches the output only through FiLM
    film_free = UNet(model.params).eval()
    film_free.load_state_dict(model.state_dict())
    with torch.no_grad():
        for module in film_free.modules():
            if getattr(module, "film", None) is not None:
                module.film.weight.zero_()
                module.film.bias.zero_()
    same = [_forward(film_free, inputs, class_labels=torch.tensor([label])) for label in (0, 1, NULL_CLASS)]
    torch.testing.assert_close(same[0], same[1])
    torch.testing.assert_close(same[0], same[2])


def test_timestep_changes_the_output(model):
    inputs = _inputs(n=1)
    a = _forward(model, inputs, t=torch.tensor([3]))
    b = _forward(model, inputs, t=torch.tensor([40]))
    assert (a - b).abs().max().item() > 1e-4


@pytest.mark.parametrize("lr_injection", ["concat", "add"])
def test_lr_image_changes_the_output(lr_injection):
    torch.manual_seed(0)
    net = UNet(_params(lr_injection=lr_injection)).eval()
    inputs = _inputs(n=1)
    a = _forward(net, inputs)
    b = _forward(net, inputs, lr_upsampled=-inputs["lr_upsampled"])
    assert (a - b).abs().max().item() > 1e-4


def test_samples_of_a_batch_do_not_interact(model):
    """GroupNorm and attention work per sample: a batch gives each sample's own output."""
    inputs = _inputs(n=3)
    together = _forward(model, inputs)
    for i in range(3):
        alone = _forward(model, {k: v[i:i + 1] for k, v in inputs.items()})
        torch.testing.assert_close(together[i:i + 1], alone, rtol=1e-4, atol=1e-5)


def test_dropout_is_active_in_train_and_off_in_eval():
    torch.manual_seed(0)
    net = UNet(_params(dropout=0.5))
    inputs = _inputs(n=2)
    net.train()
    assert not torch.equal(_forward(net, inputs), _forward(net, inputs))
    net.eval()
    first = _forward(net, inputs)
    torch.testing.assert_close(_forward(net, inputs), first, rtol=0, atol=0)
    no_dropout = UNet(_params(dropout=0.0)).eval()
    no_dropout.load_state_dict(net.state_dict())
    torch.testing.assert_close(_forward(no_dropout, inputs), first, rtol=0, atol=0)


# --- conditioning checks (diffusers #5330: fail loudly) ----------------------------------------------

def test_conditioning_checks_raise_value_error(model):
    inputs = _inputs(n=2)
    x, t, labels, lr = inputs["x"], inputs["t"], inputs["class_labels"], inputs["lr_upsampled"]
    unconditional = UNet(_params(), class_conditional=False)
    with pytest.raises(ValueError, match="class_labels given"):
        unconditional(x, t, class_labels=labels, lr_upsampled=lr)
    with pytest.raises(ValueError, match="needs class_labels"):
        model(x, t, lr_upsampled=lr)
    with pytest.raises(ValueError, match="needs lr_upsampled"):
        model(x, t, class_labels=labels)
    with pytest.raises(ValueError, match="lr_upsampled given"):
        UNet(_params(), lr_conditional=False)(x, t, class_labels=labels, lr_upsampled=lr)
    with pytest.raises(ValueError, match="needs the timestep"):
        model(x, class_labels=labels, lr_upsampled=lr)
    with pytest.raises(ValueError, match="must be x's size"):
        model(x, t, class_labels=labels, lr_upsampled=lr[..., :4, :4])
    with pytest.raises(ValueError, match="one grey channel"):
        model(x, t, class_labels=labels, lr_upsampled=lr.repeat(1, 3, 1, 1))
    with pytest.raises(ValueError, match="multiples of 4"):
        model(x[..., :6, :], t, class_labels=labels, lr_upsampled=lr[..., :6, :])
    for bad in ([0, NULL_CLASS + 1], [-1, 0]):
        with pytest.raises(ValueError, match="class_labels must be in 0..2"):
            model(x, t, class_labels=torch.tensor(bad), lr_upsampled=lr)


def test_regression_variant_needs_no_timestep_or_label():
    torch.manual_seed(0)
    net = UNet(_params(), time_conditional=False, class_conditional=False).eval()
    assert not hasattr(net, "time_mlp") and not hasattr(net, "class_embedding")
    inputs = _inputs(n=2)
    output = net(inputs["x"], lr_upsampled=inputs["lr_upsampled"])
    assert output.shape == inputs["x"].shape
    with pytest.raises(ValueError, match="t given"):
        net(inputs["x"], inputs["t"], lr_upsampled=inputs["lr_upsampled"])
    with pytest.raises(ValueError, match="class_labels given"):
        net(inputs["x"], class_labels=inputs["class_labels"], lr_upsampled=inputs["lr_upsampled"])


# --- attention: the deterministic replacement (CUDA only) and the unchanged CPU path ---------------

def _sdpa_forward(self, x):
    """SelfAttention.forward as it was before the deterministic path: fused SDPA, always."""
    n, c, h, w = x.shape
    q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    return x + self.proj(out.transpose(-1, -2).reshape(n, c, h, w))


def test_cpu_forward_is_bitwise_the_sdpa_forward(model, monkeypatch):
    """On the CPU the network computes exactly what it computed with plain SDPA (same machine, same input),
    also under deterministic algorithms (the explicit product is for CUDA gradients only)."""
    from medsr.diffusion import unet

    inputs = _inputs(n=3, height=16, width=16, seed=4)
    with torch.no_grad():
        ours = _forward(model, inputs)
    with monkeypatch.context() as patch:
        patch.setattr(unet.SelfAttention, "forward", _sdpa_forward)
        with torch.no_grad():
            before = _forward(model, inputs)
    assert torch.equal(ours, before)
    monkeypatch.setattr(unet, "explicit_attention", lambda *a: pytest.fail("explicit attention used on the CPU"))
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert torch.equal(_forward(model, inputs), before.detach())  # with gradients taken, on the CPU
    finally:
        torch.use_deterministic_algorithms(deterministic)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_explicit_attention_matches_sdpa_forward_and_backward(dtype, tolerance):
    from medsr.diffusion.unet import explicit_attention

    generator = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, 64, 8, generator=generator, dtype=dtype, requires_grad=True) for _ in range(3))
    cotangent = torch.randn(2, 3, 64, 8, generator=generator, dtype=dtype)
    fused = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    fused_grads = torch.autograd.grad(fused, (q, k, v), cotangent)
    explicit = explicit_attention(q, k, v)
    explicit_grads = torch.autograd.grad(explicit, (q, k, v), cotangent)
    assert torch.allclose(explicit, fused, atol=tolerance, rtol=tolerance)
    for a, b in zip(explicit_grads, fused_grads):
        assert torch.allclose(a, b, atol=tolerance, rtol=tolerance)


def test_the_explicit_product_is_chosen_only_for_cuda_gradients_under_deterministic_algorithms():
    """The guard of the CUDA-only branch (no GPU here: a stand-in with is_cuda)."""
    from types import SimpleNamespace

    from medsr.diffusion.unet import needs_deterministic_backward

    cuda, cpu = SimpleNamespace(is_cuda=True), SimpleNamespace(is_cuda=False)
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        assert needs_deterministic_backward(cuda) and not needs_deterministic_backward(cpu)
        with torch.no_grad():  # sampling: the fused kernel (its forward is deterministic)
            assert not needs_deterministic_backward(cuda)
        torch.use_deterministic_algorithms(False)
        assert not needs_deterministic_backward(cuda)
    finally:
        torch.use_deterministic_algorithms(deterministic)
