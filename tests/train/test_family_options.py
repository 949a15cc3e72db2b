"""A family is the unit of extension, and no option is ever silently ignored.

Every (family, option) pair over dcgan, stylegan and pix2pix either changes what one training step does
(losses, weights, D's inputs or the step's state after a few steps on a fixed seed) or is refused by
`ganplug train` with exit 2 naming the option and the family. StyleGAN's losses follow --loss (nonsat is
today's softplus bit for bit), augmentation reaches D for every image family, pix2pix's WGAN-GP has its
penalty, and a family defined in a test trains through `train()` without touching any other file.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganplug.cli import train_cmd
from ganplug.cli.app import main
from ganplug.device import make_runtime
from ganplug.errors import UserError
from ganplug.models import FAMILIES, build_models, takes_images
from ganplug.models.registry import Family, ModelSpec
from ganplug.train.augment import augment_pair
from ganplug.train.config import LOOP_OPTIONS, TrainConfig, field_defaults, flag, model_config
from ganplug.train.steps import build_step

ARCHS = ("dcgan", "stylegan", "pix2pix")
TINY = {"dcgan": {"base_channels": 8}, "stylegan": {"capacity": 0.05, "mapping_layers": 1},
        "pix2pix": {"base_channels": 8}}
RT = make_runtime("cpu", "fp32", channels_last=False)


# ------------------------------------------------------------------------------------------ harness


class ScriptedD(nn.Module):
    """A discriminator with fixed answers per sample (+5 = "real"), so ADA's r_t is known exactly."""

    def __init__(self, signs: list[float], blocks: int = 2):
        super().__init__()
        self.signs = torch.tensor(signs)
        self.bias = nn.Parameter(torch.zeros(()))
        self.blocks = nn.Sequential(*[nn.Identity() for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 5 * self.signs[: len(x)] + self.bias + 0 * x.flatten(1).sum(1)


D_STANDINS = {"real": [1.0, 1.0, 1.0, 1.0], "split": [1.0, 1.0, 1.0, -1.0]}  # r_t = 1 and r_t = 0.5


@dataclass
class Trace:
    stats: list[dict[str, float]]
    weights: list[torch.Tensor]
    d_inputs: list[torch.Tensor]
    state: dict
    p: float | None  # ADA's p (None without ADA)


def run_step(arch: str, settings: dict, *, steps: int = 2, d: str = "", freeze: bool = True) -> Trace:
    """`steps` iterations of the family's step on fixed batches, from fixed initial weights."""
    model_opts = {k: v for k, v in settings.items() if k in train_cmd.MODEL_FLAGS}
    train_opts = {k: v for k, v in settings.items() if k not in train_cmd.MODEL_FLAGS}
    if d and arch == "stylegan":  # R1 of a D that ignores its input has no gradient to penalise
        train_opts.setdefault("r1_gamma", 0.0)
    cfg = TrainConfig.for_family(arch, data="", out="", size=32, batch=4, **train_opts)
    cfg.model = {**TINY[arch], **(FAMILIES[arch].model_defaults(cfg) if FAMILIES[arch].model_defaults else {}),
                 **model_opts}
    cfg.validate()
    torch.manual_seed(0)
    G, D, spec = build_models(arch, model_config(cfg, 3, 3))
    if d:
        D = ScriptedD(D_STANDINS[d])
    if freeze and cfg.freeze_d:  # as the loop does: the first N blocks from the input side keep their weights
        for block in list(D.blocks)[: cfg.freeze_d]:
            block.requires_grad_(False)
    seen: list[torch.Tensor] = []
    D.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    opt_G = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_D = torch.optim.Adam([p for p in D.parameters() if p.requires_grad], lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    step = build_step(arch, G, D, opt_G, opt_D, cfg, RT)
    gen = torch.Generator().manual_seed(1)
    channels = 6 if spec.image_to_image else 3
    batches = iter([torch.rand(4, channels, 32, 32, generator=gen) * 2 - 1 for _ in range(steps * cfg.d_steps)])
    stats = [step(lambda: next(batches), k) for k in range(steps)]
    weights = [t.detach().clone() for t in (*G.parameters(), *D.parameters())]
    return Trace(stats, weights, seen, step.state_dict(), step.ada.p if step.ada is not None else None)


REPORTED = ("aug/p", "ada/rt")  # what the step reports about augmentation is no evidence that it augments


def _losses(trace: Trace) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k not in REPORTED} for row in trace.stats]


def differs(a: Trace, b: Trace) -> bool:
    """Losses, weights or D's inputs differ, or ADA chose another p (what ADA's options control)."""
    if _losses(a) != _losses(b) or a.p != b.p or len(a.weights) != len(b.weights):
        return True
    if any(x.shape != y.shape or not torch.equal(x, y) for x, y in zip(a.weights, b.weights, strict=True)):
        return True
    return len(a.d_inputs) != len(b.d_inputs) or any(
        x.shape != y.shape or not torch.equal(x, y) for x, y in zip(a.d_inputs, b.d_inputs, strict=True))


@dataclass(frozen=True)
class Case:
    option: str  # a TrainConfig field or a model flag, as `ganplug train` spells it with dashes
    value: object
    base: dict = field(default_factory=dict)  # what both runs share (the option's prerequisites)
    d: str = ""  # a scripted discriminator for ADA's options
    steps: int = 2

    @property
    def id(self) -> str:
        return f"{self.option}={self.value}"


CASES = [
    Case("loss", "hinge"), Case("loss", "wgan-gp"), Case("gp_weight", 1.0, {"loss": "wgan-gp"}),
    Case("label_smoothing", 0.2), Case("label_noise", 0.2), Case("d_steps", 2),
    Case("lr_g", 1e-2), Case("lr_d", 1e-2), Case("beta1", 0.9), Case("beta2", 0.5),
    Case("aug", "diffaug"), Case("aug", "ada", d="real", steps=4),
    Case("aug_p", 0.9, {"aug": "diffaug"}), Case("aug_ops", "cutout", {"aug": "diffaug"}),
    Case("ada_target", 0.4, {"aug": "ada"}, d="split", steps=4),
    Case("ada_kimg", 1.0, {"aug": "ada", "ada_target": 0.4}, d="split", steps=4),
    Case("r1_gamma", 1.0), Case("r1_interval", 2), Case("pl_weight", 2.0), Case("style_mixing", 0.0),
    Case("l1_weight", 10.0), Case("jitter", False), Case("freeze_d", 1),
    Case("z_dim", 8), Case("base_channels", 16), Case("kernel", 5), Case("init", "glorot"), Case("d_dropout", 0.3),
    Case("mapping_layers", 2), Case("capacity", 0.1), Case("dense_bottleneck", 2), Case("skip_drop", 1),
]

# What each family refuses; every other pair must change the step. Written out, so that a family that
# starts refusing (or silently accepting) an option fails here.
REFUSED = {
    "dcgan": {"r1_gamma", "r1_interval", "pl_weight", "style_mixing", "l1_weight", "jitter", "mapping_layers",
              "capacity", "dense_bottleneck", "skip_drop"},
    "stylegan": {"l1_weight", "jitter", "base_channels", "kernel", "init", "d_dropout", "dense_bottleneck",
                 "skip_drop"},
    "pix2pix": {"r1_gamma", "r1_interval", "pl_weight", "style_mixing", "freeze_d", "z_dim", "kernel", "init",
                "d_dropout", "mapping_layers", "capacity"},
}


def cli_args(settings: dict) -> list[str]:
    """Options as `ganplug train` spells them; a switch is --name or --no-name."""
    out: list[str] = []
    for k, v in settings.items():
        out += [flag(k) if v else "--no-" + flag(k)[2:]] if isinstance(v, bool) else [flag(k), str(v)]
    return out


def dry_run(capsys, arch: str, settings: dict, tmp_path, imgs) -> tuple[int, str]:
    code = main(["train", str(imgs), "--out", str(tmp_path / "r"), "--arch", arch, *cli_args(settings), "--dry-run"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(scope="module")
def imgs(tmp_path_factory):
    from tests.conftest import write_shapes

    return write_shapes(tmp_path_factory.mktemp("fo") / "imgs", 8, size=32)


_BASE: dict[tuple, Trace] = {}


def base_trace(arch: str, case: Case) -> Trace:
    key = (arch, tuple(sorted(case.base.items())), case.d, case.steps)
    if key not in _BASE:
        _BASE[key] = run_step(arch, dict(case.base), steps=case.steps, d=case.d)
    return _BASE[key]


# ------------------------------------------------------------------------------------------ the table


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("arch", ARCHS)
def test_every_family_option_applies_or_is_refused(arch, case, capsys, tmp_path, imgs, one_thread):
    code, out = dry_run(capsys, arch, {**case.base, case.option: case.value}, tmp_path, imgs)
    if case.option in REFUSED[arch]:
        assert code == 2, out
        assert flag(case.option) in out and f"--arch {arch}" in out and "Traceback" not in out
        return
    assert code == 0, out
    assert not (tmp_path / "r").exists()  # --dry-run creates nothing
    varied = run_step(arch, {**case.base, case.option: case.value}, steps=case.steps, d=case.d)
    assert differs(base_trace(arch, case), varied), f"{flag(case.option)} {case.value} changed nothing for {arch}"


def test_the_table_covers_every_training_option():
    """A new TrainConfig field must be classified: used by the loop for every family, or a case above."""
    options = {f.name for f in dataclasses.fields(TrainConfig)} - LOOP_OPTIONS
    assert options <= {c.option for c in CASES} | {"lr_g", "lr_d", "beta1", "beta2", "d_steps"}
    assert set(train_cmd.MODEL_FLAGS) <= {c.option for c in CASES}
    for fam in FAMILIES.values():
        assert fam.train_options <= options, fam.name


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("settings,needs", [
    ({"loss": "hinge", "label_smoothing": 0.1}, "--loss nonsat"),
    ({"loss": "wgan-gp", "label_noise": 0.1}, "--loss nonsat"),
    ({"gp_weight": 5.0}, "--loss wgan-gp"),
    ({"aug_p": 0.5}, "--aug diffaug"),
    ({"aug": "ada", "aug_p": 0.5}, "--aug diffaug"),
    ({"aug": "diffaug", "ada_target": 0.5}, "--aug ada"),
    ({"aug_ops": "cutout"}, "--aug diffaug or --aug ada"),
])
def test_options_that_do_nothing_with_the_other_settings_are_refused(arch, settings, needs, capsys, tmp_path,
                                                                     imgs):
    code, out = dry_run(capsys, arch, settings, tmp_path, imgs)
    assert code == 2 and needs in out and f"--arch {arch}" in out, out


def test_a_default_never_trips_a_refusal_but_an_explicit_default_does(capsys, tmp_path, imgs):
    assert dry_run(capsys, "dcgan", {}, tmp_path, imgs)[0] == 0  # --l1-weight 100 etc. are defaults: fine
    code, out = dry_run(capsys, "dcgan", {"l1_weight": 100.0}, tmp_path, imgs)
    assert code == 2 and "--l1-weight does nothing for --arch dcgan; it is an option of pix2pix" in out


def test_a_saved_config_goes_through_the_same_check():
    cfg = TrainConfig(data="", out="", arch="dcgan", pl_weight=2.0)
    with pytest.raises(UserError, match="--pl-weight does nothing for --arch dcgan; it is an option of stylegan"):
        cfg.validate()


# ------------------------------------------------------------------------------------------ StyleGAN losses


class SpyD(nn.Module):
    """Wraps D and records its logits, in call order."""

    def __init__(self, D: nn.Module):
        super().__init__()
        self.D, self.logits = D, []

    def forward(self, x):
        out = self.D(x)
        self.logits.append(out.detach().clone())
        return out


def _stylegan_step(loss: str, **kw) -> tuple[dict[str, float], list[torch.Tensor]]:
    cfg = TrainConfig.for_family("stylegan", data="", out="", size=32, batch=4, loss=loss, r1_gamma=0.0, **kw)
    cfg.model = dict(TINY["stylegan"])
    torch.manual_seed(0)
    G, D, _ = build_models("stylegan", model_config(cfg, 3))
    spy = SpyD(D)
    step = build_step("stylegan", G, spy, torch.optim.Adam(G.parameters(), 1e-3, betas=(0.0, 0.99)),
                      torch.optim.Adam(D.parameters(), 1e-3, betas=(0.0, 0.99)), cfg, RT)
    real = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    return step(lambda: real, 1), spy.logits  # step 1: no R1, no path length


def test_stylegan_nonsat_is_todays_softplus_exactly(one_thread):
    stats, (fake, real, gen) = _stylegan_step("nonsat")
    assert stats["loss/D"] == (F.softplus(fake).mean() + F.softplus(-real).mean()).item()
    assert stats["loss/G"] == F.softplus(-gen).mean().item()


def test_stylegan_hinge_is_the_hinge_formula_on_d_outputs(one_thread):
    stats, (fake, real, gen) = _stylegan_step("hinge")
    d_ref = torch.clamp(1 - real, min=0).mean() + torch.clamp(1 + fake, min=0).mean()
    assert stats["loss/D"] == pytest.approx(d_ref.item(), rel=1e-6)
    assert stats["loss/G"] == pytest.approx(-gen.mean().item(), rel=1e-6)


def test_stylegan_label_smoothing_moves_the_real_targets(one_thread):
    stats, (fake, real, _) = _stylegan_step("nonsat", label_smoothing=0.2)
    t = 0.8
    ref = (t * F.softplus(-real) + (1 - t) * F.softplus(real)).mean() + F.softplus(fake).mean()
    assert stats["loss/D"] == pytest.approx(ref.item(), rel=1e-6)


def test_stylegan_wgan_gp_has_its_penalty(one_thread):
    stats, _ = _stylegan_step("wgan-gp")
    assert stats["loss/grad_penalty"] > 0


# ------------------------------------------------------------------------------------------ augmentation


def test_diffaug_changes_dcgan_d_inputs(one_thread):
    plain = run_step("dcgan", {}, steps=1)
    aug = run_step("dcgan", {"aug": "diffaug", "aug_p": 1.0, "aug_ops": "translation,cutout"}, steps=1)
    real = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert torch.equal(plain.d_inputs[0], real)  # without --aug D sees the batch itself
    assert not torch.equal(aug.d_inputs[0], real)
    assert aug.stats[0]["aug/p"] == 1.0


@pytest.mark.parametrize("arch", ["dcgan", "pix2pix"])
def test_ada_p_moves_when_d_is_sure(arch, one_thread):
    """D says "real" to everything (r_t = 1 > 0.6): after 4 D updates p rises by 4 * 4 / (ada_kimg * 1000)."""
    trace = run_step(arch, {"aug": "ada", "ada_kimg": 1.0}, steps=4, d="real")
    assert trace.p == pytest.approx(16 / 1000)
    assert trace.state["ada"]["adjustments"] == 1 and trace.state["ada"]["last_rt"] == 1.0


def test_pix2pix_pairs_move_together_and_colour_touches_only_the_image():
    a = torch.rand(8, 3, 32, 32) * 2 - 1
    pair = torch.cat([a, a], dim=1)
    moved = augment_pair(pair, 1.0, ("xflip", "rot90", "translation", "scale", "cutout"), 3)
    assert not torch.equal(moved, pair)
    assert torch.equal(moved[:, :3], moved[:, 3:])  # one geometric transform for A and B
    coloured = augment_pair(pair, 1.0, ("brightness", "contrast", "saturation"), 3)
    assert torch.equal(coloured[:, :3], a) and not torch.equal(coloured[:, 3:], a)


def test_pix2pix_wgan_gp_has_a_gradient_penalty(one_thread):
    trace = run_step("pix2pix", {"loss": "wgan-gp"}, steps=1)
    assert trace.stats[0]["loss/grad_penalty"] > 0


# ------------------------------------------------------------------------------------------ one source of defaults


def test_cli_defaults_are_the_dataclass_defaults():
    """Each `ganplug train` option that sets a TrainConfig field defaults to that field's default, or to None
    where the family decides (optimiser, size from the dataset, R1 auto, model widths)."""
    defaults = field_defaults()
    family_decides = {"lr_g", "lr_d", "beta1", "beta2", "size", "r1_gamma", "init_from"}
    for name, param in inspect.signature(train_cmd.train).parameters.items():
        info = param.default
        if name in defaults and name not in family_decides | {"model"}:  # --model is a KEY=VALUE list
            assert info.default == defaults[name], name
        if name in family_decides | set(train_cmd.MODEL_FLAGS):
            assert info.default is None, name
    minutes = inspect.signature(train_cmd.train).parameters["minutes"].default.default
    assert minutes * 60 == defaults["max_seconds"]


def test_every_training_option_has_a_cli_flag():
    params = set(inspect.signature(train_cmd.train).parameters)
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"data", "out", "model", "max_seconds"}
    assert fields <= params


@pytest.mark.parametrize("arch", ARCHS)
def test_family_optimiser_defaults_replace_the_old_table(arch):
    cfg = TrainConfig.for_family(arch, data="", out="")
    assert (cfg.lr_g, cfg.lr_d, cfg.beta1, cfg.beta2) == dataclasses.astuple(FAMILIES[arch].optimiser)


def test_from_dict_refuses_unknown_keys_and_loads_todays_fields():
    saved = TrainConfig(data="d", out="o", arch="stylegan").to_dict()
    assert TrainConfig.from_dict(json.loads(json.dumps(saved))) == TrainConfig(data="d", out="o", arch="stylegan")
    with pytest.raises(UserError, match="unknown training option.*lr_gg"):
        TrainConfig.from_dict({**saved, "lr_gg": 1.0})
    with pytest.raises(UserError, match="lack data"):
        TrainConfig.from_dict({"out": "o"})


def test_dry_run_resolves_model_spec_and_derived_values(capsys, tmp_path, imgs):
    code, out = dry_run(capsys, "stylegan", {"capacity": 0.05, "batch": 4, "size": 32}, tmp_path, imgs)
    assert code == 0, out
    doc = json.loads(out[out.index("{"):])
    assert (doc["lr_g"], doc["beta1"]) == (0.0025, 0.0)
    assert doc["resolved"]["model"]["capacity"] == 0.05 and doc["resolved"]["model"]["mapping_layers"] == 8
    assert doc["resolved"]["spec"]["latent"] == "w" and doc["resolved"]["spec"]["w_dim"] == 512
    assert doc["resolved"]["r1_gamma"] == pytest.approx(0.0002 * 32 * 32 / 4)
    code, out = dry_run(capsys, "dcgan", {"loss": "wgan-gp", "size": 32}, tmp_path, imgs)
    assert json.loads(out[out.index("{"):])["resolved"]["model"]["d_norm"] == "layer"
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------------ the registry


@dataclass
class ToyConfig:
    size: int = 32
    channels: int = 3
    z_dim: int = 4


class ToyG(nn.Module):
    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.z_dim, self.shape = cfg.z_dim, (cfg.channels, cfg.size, cfg.size)
        self.fc = nn.Linear(cfg.z_dim, cfg.channels * cfg.size * cfg.size)

    def forward(self, z, truncation: float = 1.0):
        return torch.tanh(self.fc(z * truncation)).view(len(z), *self.shape)


class ToyD(nn.Module):
    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.channels * cfg.size * cfg.size, 1)

    def forward(self, x):
        return self.fc(x.flatten(1)).flatten()


def toy_family(name: str = "toy", **kw) -> Family:
    return Family(name=name, config_cls=ToyConfig, build=lambda c: (ToyG(c), ToyD(c)),
                  spec=lambda c: ModelSpec(arch=name, size=c.size, channels=c.channels, z_dim=c.z_dim), **kw)


def test_a_family_defined_here_trains_through_train(monkeypatch, tmp_path, shapes_dir, one_thread):
    from ganplug.train.loop import train

    monkeypatch.setitem(FAMILIES, "toy", toy_family())
    cfg = TrainConfig(data=str(shapes_dir), out=str(tmp_path / "toy"), arch="toy", size=32, steps=2, batch=4,
                      sample_every=0, ckpt_every=0, grid_samples=4, device="cpu", precision="fp32",
                      channels_last=False, loss="hinge", aug="diffaug")
    result = train(cfg)
    assert result.step == 2 and result.checkpoint.is_file()
    assert not takes_images("toy")
    with pytest.raises(UserError, match="--pl-weight does nothing for --arch toy"):
        dataclasses.replace(cfg, pl_weight=1.0).validate()


def test_a_device_default_needs_a_default_for_every_device(monkeypatch):
    """The CLI's help and check_options know what a family chooses from train_defaults' keys alone, so a
    device-dependent value with no device-independent default there is a mistake in the family."""
    fam = toy_family(train_defaults={"batch": 8}, device_train_defaults=lambda t: {"batch": 2, "lr_d": 1e-3})
    with pytest.raises(ValueError, match="device_train_defaults sets lr_d, which train_defaults lacks"):
        fam.own_train_defaults(TrainConfig(data="", out=""))
    fam = toy_family(train_defaults={"batch": 8}, device_train_defaults=lambda t: {"batch": 2})
    assert fam.own_train_defaults(TrainConfig(data="", out="")) == {"batch": 2}


def test_takes_images_reads_the_spec(monkeypatch):
    fam = toy_family("toy_i2i")
    fam = dataclasses.replace(fam, spec=lambda c: ModelSpec(arch="toy_i2i", size=c.size, channels=c.channels,
                                                            z_dim=0, image_to_image=True, latent="none",
                                                            in_channels=3, supports=("translation",)))
    monkeypatch.setitem(FAMILIES, "toy_i2i", fam)
    assert takes_images("toy_i2i") and takes_images("pix2pix") and not takes_images("stylegan")


@pytest.mark.parametrize("arch,latent,supports", [("dcgan", "z", {"truncation", "projection"}),
                                                  ("stylegan", "w", {"truncation", "mixing", "projection"}),
                                                  ("pix2pix", "none", {"translation"})])
def test_the_spec_is_complete(arch, latent, supports):
    cfg = model_config(TrainConfig(data="", out="", arch=arch, size=32, model=TINY[arch]), 4, 1)
    G, _, spec = build_models(arch, cfg)
    assert G.spec == spec and spec.latent == latent and set(spec.supports) == supports
    assert spec.out_channels == 4
    if arch == "stylegan":
        assert (spec.w_dim, spec.num_ws) == (cfg.w_dim, cfg.num_ws) and spec.z_dim == cfg.z_dim
    if arch == "pix2pix":
        assert spec.in_channels == 1 and spec.image_to_image and spec.z_dim == 0


def test_resume_refuses_options_it_would_ignore(capsys, tmp_path, imgs, one_thread):
    run = tmp_path / "run"
    tiny = ["--size", "32", "--batch", "4", "--arch", "dcgan", "--base-channels", "8", "--device", "cpu",
            "--precision", "fp32",
            "--no-channels-last", "--sample-every", "0", "--grid-samples", "4", "--no-watch"]
    assert main(["train", str(imgs), "--out", str(run), "--steps", "1", "--loss", "hinge", *tiny]) == 0
    capsys.readouterr()
    code = main(["train", "--resume", str(run), "--steps", "2", "--lr-d", "1e-3"])
    err = capsys.readouterr().err
    assert code == 2 and "--lr-d would be ignored" in err
    assert main(["train", "--resume", str(run), "--steps", "2", "--device", "cpu", "--dry-run"]) == 0
    doc = json.loads((out := capsys.readouterr().out)[out.index("{"):])
    assert doc["loss"] == "hinge" and doc["steps"] == 2  # the run's own settings, the new length
