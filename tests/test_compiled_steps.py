"""Compiled training steps (``optnb.train.compiling``): no graph breaks inside a step for any model
family, compiled equals eager (float64 and float32, drop path under a fixed seed included), and a
fit compiles once, never again between epochs.

Graph breaks are counted with ``torch._dynamo.explain`` (tracing only, no code generation). The
equivalence runs three SGD steps eager and compiled from the same weights on the same batches and
compares every weight afterwards: with Inductor's generated C++ for two small networks (the slow
part, about a minute each on 2 cores) and AOTAutograd's graphs without code generation
(``aot_eager``) for the others. Tolerances, relative to each weight's scale (at least 0.1): float64
1e-9 traced, 1e-8 Inductor; float32 2e-4 traced, 1e-4 Inductor (fused, reordered reductions round differently; three
SGD steps at lr 0.005 amplify that less than the recipes' 0.1 would, which is why it is 0.005).
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo

from optnb import models
from optnb.nas import genotypes as G
from optnb.nas.architect import Architect
from optnb.nas.evaluate import DropPathStep
from optnb.nas.network import NetworkCIFAR, NetworkImageNet
from optnb.nas.search import BilevelStep, SearchConfig, build_model
from optnb.train import compiling
from optnb.train.compiling import CompileCounter, CompileOptionError
from optnb.train.steps import ClassifierStep

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Every test starts without compiled code: counts and cache limits are per test."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _cifar(name: str, **options) -> torch.nn.Module:
    return models.build(name, **options)


def _eval_net() -> torch.nn.Module:
    net = NetworkCIFAR(G.get("DARTS_V2"), C=4, layers=5, auxiliary=True)
    net.drop_path_prob = 0.2
    net.drop_path_generator = torch.Generator().manual_seed(7)
    return net


def _step(net: torch.nn.Module, lr: float = 0.005) -> ClassifierStep:
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-4,
                          fused=True)
    if isinstance(net, NetworkCIFAR | NetworkImageNet):
        return DropPathStep(net, opt, grad_clip=5.0, aux_weight=0.4, network=net, drop_path=0.2, epochs=10)
    return ClassifierStep(net, opt)


def _supernet(space: str) -> BilevelStep:
    model = build_model(SearchConfig(space=space, C=4, layers=3, steps=2))  # 5 mixed edges per cell
    w_opt = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(model.arch_parameters(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    weights = ClassifierStep(model, w_opt, grad_clip=5.0, forward_kwargs={"detach_arch": True})
    return BilevelStep(model, Architect(model, a_opt, w_opt, 1), weights, val=None, derive_rule="auto")


FAMILIES = {
    "resnet8": lambda: _cifar("resnet8"),
    "hbnet20_restart": lambda: _cifar("hbnet20"),  # momentum across blocks, restarts at stages
    "hbnet8_learnable_beta": lambda: _cifar("hbnet8", learnable_beta=True),
    "hbnet20_shortcut": lambda: _cifar("hbnet20", hb_boundary="shortcut"),
    "densenet10": lambda: _cifar("densenet10"),
    "agdnet10": lambda: _cifar("agdnet10"),  # coefficient scaling
    "darts_v2_eval": _eval_net,  # drop path masks, auxiliary head
    "darts_v2_imagenet": lambda: NetworkImageNet(G.get("DARTS_V2"), C=8, num_classes=5, layers=3),
    "resnet34": lambda: models.build("resnet34", num_classes=5),
    "hbnet50": lambda: models.build("hbnet50", num_classes=5),
    "agdnet121": lambda: models.build("agdnet121", num_classes=5),
}
IMAGE = {"darts_v2_imagenet": 224, "resnet34": 64, "hbnet50": 64, "agdnet121": 32}  # 224: the aux head's 7x7


def _batch(name: str, n: int = 2, dtype: torch.dtype = torch.float32, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    size = IMAGE.get(name, 32)
    classes = 5 if name in IMAGE else 10
    return (torch.randn(n, 3, size, size, generator=gen, dtype=dtype),
            torch.randint(0, classes, (n,), generator=gen))


def test_compile_options_are_checked():
    assert compiling.compile_kwargs(False) is None and compiling.compile_kwargs("off") is None
    assert compiling.compile_kwargs(True) == {"dynamic": False}
    assert compiling.compile_kwargs("reduce-overhead") == {"mode": "reduce-overhead", "dynamic": False}
    assert compiling.compile_kwargs("aot_eager") == {"backend": "aot_eager", "dynamic": False}
    assert compiling.parse("ON") is True and compiling.parse("off") is False
    with pytest.raises(CompileOptionError, match="unknown compile option 'fast'; valid: on, off, default"):
        compiling.parse("fast")
    with pytest.raises(CompileOptionError, match="unknown task 'eval'; valid: train, search, evaluate"):
        compiling.default_for("paper", "eval")


def test_profile_defaults_and_the_environment_override(monkeypatch):
    monkeypatch.delenv(compiling.ENV, raising=False)
    profiles = ("smoke", "quick", "paper")
    assert [compiling.default_for(p, "train", "hbnet") for p in profiles] == [False, True, True]
    assert [compiling.default_for(p, "train", "agdnet") for p in profiles] == [False] * 3
    assert [compiling.default_for(p, task, "") for p in profiles for task in ("search", "evaluate")] == [False] * 6
    monkeypatch.setenv(compiling.ENV, "off")
    assert compiling.default_for("paper", "search") is False
    monkeypatch.setenv(compiling.ENV, "max-autotune")
    assert compiling.default_for("smoke", "evaluate") == "max-autotune"
    monkeypatch.setenv(compiling.ENV, "turbo")
    with pytest.raises(CompileOptionError, match="OPTNB_COMPILE: unknown compile option 'turbo'"):
        compiling.default_for("paper", "train")


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_a_training_step_is_one_graph(name):
    torch.manual_seed(0)
    step = _step(FAMILIES[name]().train())
    x, y = _batch(name)
    explained = torch._dynamo.explain(step.forward_loss)(x, y, **step.inputs(x))
    reasons = [str(b.reason).splitlines()[0] for b in explained.break_reasons]
    assert explained.graph_break_count == 0, reasons
    assert explained.graph_count == 1


def _train(make, name: str, spec: bool | str, dtype: torch.dtype, steps: int = 3):
    torch.manual_seed(0)
    net = make().to(dtype).train()
    step = _step(net)
    if spec:
        step.compile(spec)
    losses = [float(step(*_batch(name, n=8, dtype=dtype, seed=i)).loss) for i in range(steps)]
    return losses, [p.detach().clone() for p in net.parameters()], [b.clone() for b in net.buffers()]


def _assert_close(eager, compiled, rtol: float) -> None:
    eager_losses, eager_params, eager_buffers = eager
    losses, params, buffers = compiled
    assert losses == pytest.approx(eager_losses, rel=rtol)
    for want, got in zip(eager_params + eager_buffers, params + buffers):
        if want.is_floating_point():
            scale = max(want.abs().max().item(), 0.1)  # BN biases start at 0: not their own scale
            assert (got - want).abs().max().item() <= rtol * scale
        else:
            assert torch.equal(want, got)


@pytest.mark.parametrize(("name", "dtype", "rtol"), [
    # measured 3.5e-15 (1 and 2 threads, AVX2 AMD EPYC); 7.7e-8 there while the step's loss was
    # computed in fp32 even for a float64 network
    ("hbnet8_learnable_beta", torch.float64, 1e-12),
    # fp32, 3 steps through batch-8 BatchNorm: measured 0.94e-4 (1 thread) and 1.02e-4 (2 threads,
    # Inductor's reductions split by thread) on a 2-core x86_64; 1e-4 failed there
    ("resnet8", torch.float32, 3e-4),
])
def test_inductor_step_equals_eager(name, dtype, rtol):
    """Inductor's generated kernels (fused BatchNorm statistics, reordered reductions) against
    eager. The drop-path network is checked through AOTAutograd below: its masks are inputs, so
    code generation cannot change them, and its Inductor compile takes minutes on 2 cores."""
    eager = _train(FAMILIES[name], name, False, dtype)
    compiled = _train(FAMILIES[name], name, True, dtype)
    _assert_close(eager, compiled, rtol)


@pytest.mark.parametrize("name", ["hbnet20_restart", "agdnet10", "darts_v2_eval", "resnet34"])
@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float64, 1e-9), (torch.float32, 2e-4)])
def test_traced_step_equals_eager(name, dtype, rtol):
    """AOTAutograd's forward and backward graphs (no generated code) give eager's weights: drop
    path draws the same masks from the same generator."""
    eager = _train(FAMILIES[name], name, False, dtype)
    compiled = _train(FAMILIES[name], name, "aot_eager", dtype)
    _assert_close(eager, compiled, rtol)


@pytest.mark.parametrize("space", ["hb", "agd"])  # hb: DARTS's ops + the pair of eq. (18); agd: path weights
def test_search_steps_are_one_graph_each_and_equal_eager(space):
    """The weight step and the 1st-order architecture step (weights frozen: architecture gradients
    only) are one graph each, and give eager's weights and architecture after two iterations.
    Backend ``eager`` (Dynamo's graphs run as they are): the supernet's AOTAutograd graphs take
    minutes to build on 2 cores, and the weight step's AOT path is the classifier step's, checked
    above."""
    def run(spec):
        torch.manual_seed(0)
        bilevel = _supernet(space)
        bilevel.model.double()
        if spec:
            bilevel.compile(spec)
        with CompileCounter() as counter:
            for i in range(2):
                x, y = _batch(space, dtype=torch.float64, seed=i)
                xv, yv = _batch(space, dtype=torch.float64, seed=10 + i)
                bilevel.update(x, y, xv, yv)
        return [p.detach().clone() for p in bilevel.model.parameters()], counter

    eager, _ = run(False)
    compiled, counter = run("eager")
    assert (counter.graphs, counter.graph_breaks) == (2, 0)
    for want, got in zip(eager, compiled):
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-12)


def test_a_fit_compiles_once_and_never_between_epochs(tmp_path):
    """Three epochs of the evaluation network (drop path ramping, lr changing every epoch) compile
    exactly as many graphs as one epoch does."""
    from optnb.data import GpuLoader
    from optnb.nas.evaluate import EvalConfig, train_genotype

    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (24, 3, 32, 32), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 10, (24,), generator=gen)

    def fit(epochs: int, folder: str) -> int:
        torch._dynamo.reset()
        cfg = EvalConfig(C=4, layers=3, epochs=epochs, batch_size=8, drop_path=0.2, cutout=0)
        train = GpuLoader(x, y, 8, CPU, augment=False, seed=0)
        test = GpuLoader(x, y, 8, CPU, augment=False, shuffle=False, drop_last=False)
        with CompileCounter() as counter:
            result = train_genotype(G.get("DARTS_V2"), cfg, train, test, run_dir=tmp_path / folder,
                                    compile="aot_eager")
        assert [r["drop_path_prob"] for r in result.history][-1] == pytest.approx(0.2 * (epochs - 1) / epochs)
        assert counter.graph_breaks == 0
        return counter.graphs

    one, three = fit(1, "one"), fit(3, "three")
    assert one >= 1
    assert three == one
