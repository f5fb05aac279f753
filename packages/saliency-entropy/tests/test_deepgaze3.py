"""DeepGaze III as published: our forward against a plain, independent transcription of what
``deepgaze_pytorch`` computes (written from its documented behaviour: loops over components, explicit
index arithmetic for nearest resizing, an explicit Gaussian kernel), on state dicts built by
``deepgaze_pytorch``'s key names, at the real shapes of a 768 x 1024 image; the import into a run that
evaluate and predict accept; named errors for files that do not fit."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from perception_shared.distributed import init_distributed
from perception_shared.errors import CheckpointError
from perception_shared.export import export_model, verify_export
from saliency_entropy.config import EntropyConfig, ModelConfig
from saliency_entropy.evaluate import evaluate_run
from saliency_entropy.export import ATOL, RTOL, ExportableSaliency, export_run
from saliency_entropy.import_deepgaze import BACKBONE, LAYERS, convert_state_dict, import_deepgaze
from saliency_entropy.predict import predict_images
from saliency_entropy.registry import build_model
from saliency_entropy.report import make_report

from conftest import TINY, tiny_config, train_run

H, W = 768, 1024
FEATURE_SHAPES = [(1888, 12, 16), (128, 12, 16), (32, 12, 16)]  # DenseNet-201 denseblock4 at 384 x 512
MEAN = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64)
STD = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64)


# ----- the plain reference ---------------------------------------------------------------------------
def nearest(x: torch.Tensor, out_h: int, out_w: int, scale_h: float, scale_w: float) -> torch.Tensor:
    """Nearest resize of (..., h, w): output (i, j) reads (floor(i * scale_h), floor(j * scale_w))."""
    rows = [min(math.floor(i * scale_h), x.shape[-2] - 1) for i in range(out_h)]
    cols = [min(math.floor(j * scale_w), x.shape[-1] - 1) for j in range(out_w)]
    return x[..., rows, :][..., :, cols]


def plain_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    for b in range(x.shape[0]):
        mu = x[b].mean()
        var = ((x[b] - mu) ** 2).mean()
        out[b] = (x[b] - mu) / torch.sqrt(var + 1e-12) * weight[:, None, None] + bias[:, None, None]
    return out


def conv1x1(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return torch.einsum("oc,bchw->bohw", weight[:, :, 0, 0], x)


def plain_softplus(x: torch.Tensor) -> torch.Tensor:
    return torch.log1p(torch.exp(-x.abs())) + x.clamp_min(0)


def ln_conv_bias_softplus(x: torch.Tensor, sd: dict, prefix: str, i: int) -> torch.Tensor:
    x = plain_layer_norm(x, sd[f"{prefix}layernorm{i}.weight"], sd[f"{prefix}layernorm{i}.bias"])
    x = conv1x1(x, sd[f"{prefix}conv{i}.weight"]) + sd[f"{prefix}bias{i}.bias"][None, :, None, None]
    return plain_softplus(x)


def blur_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n): a 1-D Gaussian of ``sigma`` truncated at ceil(3 sigma), replicate padding (taps beyond an
    edge land on the edge pixel)."""
    radius = math.ceil(3 * sigma)
    taps = np.array([math.exp(-0.5 * (d / sigma) ** 2) for d in range(-radius, radius + 1)])
    taps /= taps.sum()
    m = np.zeros((n, n))
    for i in range(n):
        for k, d in enumerate(range(-radius, radius + 1)):
            m[i, min(max(i + d, 0), n - 1)] += taps[k]
    return m


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(h, w) blurred along both axes."""
    mh = torch.from_numpy(blur_matrix(x.shape[0], sigma))
    mw = torch.from_numpy(blur_matrix(x.shape[1], sigma))
    return mh @ x @ mw.T


def reference_log_density(
    sd: dict, features: list[torch.Tensor], centerbias: torch.Tensor, history: torch.Tensor | None,
    downsample: float = 2.0, readout_factor: int = 4, saliency_map_factor: int = 4,
) -> torch.Tensor:
    """DeepGaze III's (B, H, W) log-density from its state dict (float64 throughout)."""
    sd = {k: v.double() for k, v in sd.items()}
    b, h, w = centerbias.shape
    rh, rw = math.ceil(h / downsample / readout_factor), math.ceil(w / downsample / readout_factor)
    x = torch.cat([nearest(f.double(), rh, rw, f.shape[-2] / rh, f.shape[-1] / rw) for f in features], dim=1)
    sh, sw = math.floor(h / saliency_map_factor), math.floor(w / saliency_map_factor)
    cb = nearest(centerbias.double(), sh, sw, saliency_map_factor, saliency_map_factor)
    components = sorted({int(k.split(".")[1]) for k in sd if k.startswith("saliency_networks.")})
    # the first LayerNorm's statistics do not depend on the component: normalize once, then each
    # component's affine and convolution (conv(gamma * xn + beta) = (W gamma) xn + W beta)
    ones, zeros = torch.ones(x.shape[1], dtype=torch.float64), torch.zeros(x.shape[1], dtype=torch.float64)
    xn = plain_layer_norm(x, ones, zeros)
    per_component = []
    for k in components:
        first = f"saliency_networks.{k}."
        weight = sd[first + "conv0.weight"][:, :, 0, 0]
        s = torch.einsum("oc,bchw->bohw", weight * sd[first + "layernorm0.weight"][None, :], xn)
        s = plain_softplus(s + (weight @ sd[first + "layernorm0.bias"] + sd[first + "bias0.bias"])[None, :, None, None])
        for i in range(1, 3):
            s = ln_conv_bias_softplus(s, sd, first, i)
        selection = f"fixation_selection_networks.{k}."
        mixed = conv1x1(
            plain_layer_norm(s, sd[selection + "layernorm0.layernorm_part0.weight"], sd[selection + "layernorm0.layernorm_part0.bias"]),
            sd[selection + "conv0.conv_part0.weight"],
        )
        if history is not None:
            scan = f"scanpath_networks.{k}."
            encoded = torch.zeros(b, 128, rh, rw, dtype=torch.float64)
            ys = torch.tensor([min(math.floor(i * h / rh), h - 1) for i in range(rh)], dtype=torch.float64)
            xs = torch.tensor([min(math.floor(j * w / rw), w - 1) for j in range(rw)], dtype=torch.float64)
            for n in range(history.shape[1]):
                for bb in range(b):
                    fx, fy = float(history[bb, n, 0]), float(history[bb, n, 1])
                    if math.isnan(fx):
                        continue
                    dx = (xs[None, :] - fx).expand(rh, rw)
                    dy = (ys[:, None] - fy).expand(rh, rw)
                    maps = torch.stack([dx, dy, torch.sqrt(dx**2 + dy**2)])[None]
                    weight, bias = sd[f"{scan}encoding0.convolutions.{n}.weight"], sd[f"{scan}encoding0.convolutions.{n}.bias"]
                    encoded[bb] += (conv1x1(maps, weight) + bias[None, :, None, None])[0]
            y = ln_conv_bias_softplus(plain_softplus(encoded), sd, scan, 1)
            y = plain_layer_norm(y, sd[selection + "layernorm0.layernorm_part1.weight"], sd[selection + "layernorm0.layernorm_part1.bias"])
            mixed = mixed + conv1x1(y, sd[selection + "conv0.conv_part1.weight"])
        z = plain_softplus(mixed + sd[selection + "bias0.bias"][None, :, None, None])
        z = ln_conv_bias_softplus(z, sd, selection, 1)
        readout = conv1x1(z, sd[selection + "conv2.weight"])[:, 0]
        fin = f"finalizers.{k}."
        sigma, cbw = float(sd[fin + "gauss.sigma"]), float(sd[fin + "center_bias_weight"][0])
        out = []
        for bb in range(b):
            grid = nearest(readout[bb], sh, sw, rh / sh, rw / sw)
            grid = gaussian_blur(grid, sigma) + cbw * cb[bb]
            full = nearest(grid, h, w, sh / h, sw / w)
            out.append(full - torch.logsumexp(full.flatten(), 0))
        per_component.append(torch.stack(out))
    return torch.logsumexp(torch.stack(per_component), 0) - math.log(len(per_component))


# ----- state dicts by deepgaze_pytorch's key names -----------------------------------------------------
def deepgaze_head(components: int, scanpath: bool, channels: int = 2048, seed: int = 0, single: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, scale: float = 1.0, offset: float = 0.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale + offset

    sd: dict[str, torch.Tensor] = {}

    def stage(prefix: str, i: int, c_in: int, c_out: int) -> None:
        sd[f"{prefix}layernorm{i}.weight"] = rnd(c_in, scale=0.2, offset=1.0)
        sd[f"{prefix}layernorm{i}.bias"] = rnd(c_in, scale=0.2)
        sd[f"{prefix}conv{i}.weight"] = rnd(c_out, c_in, 1, 1, scale=1 / math.sqrt(c_in))
        sd[f"{prefix}bias{i}.bias"] = rnd(c_out, scale=0.3)

    for k in range(components):
        def name(part: str, k: int = k) -> str:
            return f"{part}." if single else f"{part}s.{k}."

        for i, (a, b) in enumerate([(channels, 8), (8, 16), (16, 1)]):
            stage(name("saliency_network"), i, a, b)
        if scanpath:
            scan = name("scanpath_network")
            for n in range(4):
                sd[f"{scan}encoding0.convolutions.{n}.weight"] = rnd(128, 3, 1, 1, scale=0.01)
                sd[f"{scan}encoding0.convolutions.{n}.bias"] = rnd(128, scale=0.3)
            stage(scan, 1, 128, 16)
        sel = name("fixation_selection_network")
        sd[f"{sel}layernorm0.layernorm_part0.weight"] = rnd(1, scale=0.2, offset=1.0)
        sd[f"{sel}layernorm0.layernorm_part0.bias"] = rnd(1, scale=0.2)
        sd[f"{sel}conv0.conv_part0.weight"] = rnd(128, 1, 1, 1)
        if scanpath:
            sd[f"{sel}layernorm0.layernorm_part1.weight"] = rnd(16, scale=0.2, offset=1.0)
            sd[f"{sel}layernorm0.layernorm_part1.bias"] = rnd(16, scale=0.2)
            sd[f"{sel}conv0.conv_part1.weight"] = rnd(128, 16, 1, 1, scale=0.25)
        sd[f"{sel}bias0.bias"] = rnd(128, scale=0.3)
        stage(sel, 1, 128, 16)
        sd[f"{sel}conv2.weight"] = rnd(1, 16, 1, 1, scale=2.0)
        fin = "finalizer." if single else f"finalizers.{k}."
        sd[fin + "gauss.sigma"] = torch.rand((), generator=g) * 6 + 3
        sd[fin + "center_bias_weight"] = torch.rand(1, generator=g) * 0.5 + 0.75
    return sd


def with_backbone(head: dict, backbone: dict) -> dict:
    return {**head, **{"features.features.1." + k: v for k, v in backbone.items()}}


@pytest.fixture(scope="module")
def densenet_state() -> dict:
    torch.manual_seed(0)
    return torchvision.models.densenet201(weights=None).state_dict()


def published_model(components: int, scanpath: bool, sd: dict, downsample: float = 2.0):
    cfg = ModelConfig(
        architecture="deepgaze3", backbone=BACKBONE, layers=list(LAYERS), pretrained=False,
        components=components, scanpath=scanpath, downsample=downsample,
    )
    model = build_model(cfg, EntropyConfig(n_samples=2), pretrained=False)
    model.load_state_dict(convert_state_dict(sd, model, "test.pth"))
    return model.eval()


def centerbias_and_history(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    cb = -(((xs - W / 2) / 300) ** 2 + ((ys - H / 2) / 250) ** 2) / 2
    cb = (cb - torch.logsumexp(cb.flatten(), 0)).float()
    nan = float("nan")
    history = torch.tensor(
        [
            [[700.0, 500.0], [200.0, 100.0], [200.0, 300.0], [500.0, 100.0]],  # four fixations, most recent first
            [[300.5, 250.25], [512.0, 384.0], [nan, nan], [nan, nan]],  # two, the rest missing
        ]
    )[:batch]
    return cb.expand(batch, H, W).contiguous(), history


@pytest.mark.parametrize("components,scanpath", [(1, False), (10, True)])
def test_head_equals_the_plain_reference_at_768x1024(densenet_state: dict, components: int, scanpath: bool) -> None:
    """On features of the real shapes; the scanpath mixture with two fixations and two missing ones (the
    full pipeline below has four)."""
    head = deepgaze_head(components, scanpath)
    model = published_model(components, scanpath, with_backbone(head, densenet_state))
    g = torch.Generator().manual_seed(1)
    features = [torch.randn(1, *shape, generator=g) * 2 + 0.5 for shape in FEATURE_SHAPES]
    cb, history = centerbias_and_history(2)
    cb, history = cb[1:], history[1:]
    with torch.no_grad():
        ours = model.log_density_from_features(features, (H, W), cb, history if scanpath else None)
    ref = reference_log_density(head, features, cb, history if scanpath else None)
    assert ours.shape == (1, H, W)
    assert (ours.double() - ref).abs().max() < 1e-4
    assert abs(float(ours.double().exp().sum()) - 1) < 1e-4
    if scanpath:  # the history matters, and a missing fixation is not a fixation at (0, 0)
        other = history.clone()
        other[0, 2] = 0.0
        with torch.no_grad():
            moved = model.log_density_from_features(features, (H, W), cb, other)
        assert (moved - ours).abs().max() > 1e-3


def test_full_pipeline_equals_the_reference_on_a_768x1024_image(densenet_state: dict) -> None:
    """Image in 0-255 -> nearest downsampling -> DenseNet-201 hooks -> head -> mixture, one forward each."""
    head = deepgaze_head(2, True, seed=2)  # the mixture of ten is checked on the head above
    model = published_model(2, True, with_backbone(head, densenet_state))
    image = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(3)) * 255
    cb, history = centerbias_and_history(1)
    with torch.no_grad():
        ours = model.log_density(image, cb, history)
        net = torchvision.models.densenet201(weights=None)
        net.load_state_dict(densenet_state)
        net.eval()
        outputs: dict[str, torch.Tensor] = {}
        modules = dict(net.named_modules())
        for name in LAYERS:
            modules[name].register_forward_hook(lambda _m, _i, out, name=name: outputs.__setitem__(name, out.clone()))
        small = image[:, :, ::2, ::2].double() / 255  # nearest by 2 reads every second pixel
        net(((small - MEAN[:, None, None]) / STD[:, None, None]).float())
    ref = reference_log_density(head, [outputs[n] for n in LAYERS], cb, history)
    assert (ours.double() - ref).abs().max() < 1e-4


def test_import_writes_a_run_that_evaluate_predict_report_and_train_accept(
    densenet_state: dict, synthetic_root: Path, trained_runs: dict[str, Path], tmp_path: Path
) -> None:
    sd = with_backbone(deepgaze_head(2, True, seed=4), densenet_state)
    file = tmp_path / "deepgaze3.pth"
    torch.save(sd, file)
    run = import_deepgaze(
        file, tmp_path / "imported", config="demo", overrides=TINY, data=str(synthetic_root / "MIT1003"),
        cat2000=str(synthetic_root / "CAT2000"),
    )
    result = evaluate_run(run, init_distributed("cpu"), datasets=["mit1003_val"])
    assert result["weights"]["sha256"] and result["weights"]["kind"] == "deepgaze_pytorch state dict"
    assert math.isfinite(result["datasets"]["mit1003_val"]["ig"])
    # native scale at a size the saliency grid does not divide: DeepGaze's uneven nearest upsampling
    report = make_report(trained_runs["baseline"], trained_runs["entropy_reg"], out_dir=tmp_path / "report", reference=run)
    ref = report["reference"]
    assert ref["bias_entropy_nats"] == result["bias_map"]["entropy_nats"]
    assert ref["ig_bits"]["mit1003_val"] == result["datasets"]["mit1003_val"]["ig"]
    h_reg = report["runs"][1]["bias_map"]["entropy_nats"]
    assert ref["entropy_reg_vs_reference_pct"] == pytest.approx(100 * (h_reg - ref["bias_entropy_nats"]) / ref["bias_entropy_nats"])
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Reference model" in text and "one central fixation" in text and "in-sample" in text
    image = tmp_path / "small.png"
    Image.open(next((synthetic_root / "MIT1003" / "ALLSTIMULI").glob("*.jpeg"))).crop((0, 0, 101, 75)).save(image)
    template = np.zeros((64, 64))
    template[16:48, 16:48] = 3.0
    np.save(tmp_path / "cb.npy", template)
    (tmp_path / "fix.csv").write_text(f"image,x,y\n{image.name},20,30\n{image.name},80.5,60\n")
    common = dict(device="cpu", centerbias=tmp_path / "cb.npy", scale="native")
    with_history = predict_images(run, [image], tmp_path / "a", fixations=tmp_path / "fix.csv", **common)
    without = predict_images(run, [image], tmp_path / "b", **common)
    a = np.load(with_history[0].log_density)
    b = np.load(without[0].log_density)
    assert a.shape == b.shape == (with_history[0].height, with_history[0].width)
    assert abs(np.exp(a.astype(np.float64)).sum() - 1) < 1e-4
    assert np.abs(a - b).max() > 1e-3  # the history changes the prediction
    exported = export_run(run, fmt="onnx", out=tmp_path / "deepgaze3.onnx")  # DenseNet-201 and the scanpath mixture
    assert all(c["max_abs_diff"] <= ATOL for c in exported["check"]["checks"])
    assert "central fixation" in Path(exported["preprocessing"]).read_text()
    trained = train_run(tiny_config(synthetic_root, "loop.epochs=1", "entropy.weight=0"), tmp_path / "tuned", init_from=run)
    assert trained.epochs_completed == 1
    state = torch.load(tmp_path / "tuned" / "final_model.pth", weights_only=True)
    assert state["config"]["model"]["architecture"] == "deepgaze3" and state["config"]["model"]["components"] == 2
    assert state["extra"]["weights"]["initialized_from"].endswith("final_model.pth")


def test_wrong_or_missing_keys_are_one_named_error() -> None:
    cfg = ModelConfig(architecture="deepgaze3", backbone="timm:resnet18", layers=["layer1", "layer2"], pretrained=False)
    model = build_model(cfg, EntropyConfig(n_samples=2), pretrained=False)
    backbone = {k[len("backbone.net.") :]: v for k, v in model.state_dict().items() if k.startswith("backbone.net.")}
    sd = with_backbone(deepgaze_head(1, False, channels=64 + 128, single=True), backbone)
    model.load_state_dict(convert_state_dict(sd, model, "test.pth"))  # the single-model (spatial first stage) key names
    del sd["fixation_selection_network.conv2.weight"]
    sd["saliency_network.conv9.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"unexpected keys: \['saliency_network.conv9.weight'\].*missing keys: "
                       r"\['fixation_selection_networks.0.conv2.weight'\]"):
        convert_state_dict(sd, model, "test.pth")


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_the_published_architecture_exports(fmt: str, tmp_path: Path) -> None:
    """Dynamic batch: the central-fixation history and the LayerNorms trace for any batch size."""
    cfg = ModelConfig(
        architecture="deepgaze3", backbone="timm:resnet18", layers=["layer1", "layer2"], pretrained=False,
        components=2, scanpath=True,
    )
    model = build_model(cfg, EntropyConfig(n_samples=2), pretrained=False).eval()
    wrapped = ExportableSaliency(model)
    cb = model.log_center_bias((96, 128)).float()
    g = torch.Generator().manual_seed(0)

    def inputs(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.rand(batch, 3, 96, 128, generator=g), cb.expand(batch, -1, -1).contiguous()

    path = tmp_path / ("model.onnx" if fmt == "onnx" else "model.pt")
    export_model(wrapped, inputs(2), path, fmt=fmt, input_names=["image", "centerbias"], output_names=["log_density"], preprocessing={})
    result = verify_export(path, wrapped, [inputs(1), inputs(3)], atol=ATOL, rtol=RTOL)
    assert all(c["max_abs_diff"] < 1e-4 for c in result["checks"])
    image = inputs(1)[0]
    with torch.no_grad():
        logp, _ = model(image)
        assert torch.allclose(model.full_resolution(logp), wrapped(image, cb[None]), atol=1e-5)
