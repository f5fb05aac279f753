import math

import pytest
import torch

from sparse_video_loss.models import SimVP, count_parameters


def conv(c_in, c_out, k, groups=1):
    return c_in // groups * c_out * k * k + c_out


def gn(c):
    return 2 * c


def spatial_params(C, hid_S, N_S):
    """Encoder + decoder + readout, from the architecture: 3x3 ConvSC layers, PixelShuffle decoder layers."""
    enc = conv(C, hid_S, 3) + gn(hid_S) + (N_S - 1) * (conv(hid_S, hid_S, 3) + gn(hid_S))
    n_up = N_S // 2
    dec = n_up * (conv(hid_S, 4 * hid_S, 3) + gn(hid_S)) + (N_S - n_up) * (conv(hid_S, hid_S, 3) + gn(hid_S))
    return enc + dec + conv(hid_S, C, 1)


def ginception(c_in, c_hid, c_out):
    g = 8 if c_hid % 8 == 0 else 1
    return conv(c_in, c_hid, 1) + sum(conv(c_hid, c_out, k, g) + gn(c_out) for k in (3, 5, 7, 11))


def incepu_params(T, C, hid_S, hid_T, N_S, N_T):
    c_in, h = T * hid_S, hid_T
    enc = ginception(c_in, h // 2, h) + (N_T - 1) * ginception(h, h // 2, h)
    dec = ginception(h, h // 2, h) + (N_T - 2) * ginception(2 * h, h // 2, h) + ginception(2 * h, h // 2, c_in)
    return spatial_params(C, hid_S, N_S) + enc + dec


def gsta_block(d, ratio=8.0):
    h = int(d * ratio)
    attention = conv(d, d, 1) + (25 * d + d) + (49 * d + d) + conv(d, 2 * d, 1) + conv(d, d, 1)
    mlp = conv(d, h, 1) + (9 * h + h) + conv(h, d, 1)
    return 2 * 2 * d + attention + mlp + 2 * d  # two BatchNorms, two layer scales


def gsta_params(T, C, hid_S, hid_T, N_S, N_T):
    c_in, h = T * hid_S, hid_T
    translator = gsta_block(c_in) + conv(c_in, h, 1) + (N_T - 2) * gsta_block(h) + gsta_block(h) + conv(h, c_in, 1)
    return spatial_params(C, hid_S, N_S) + translator


@pytest.mark.parametrize("model_type", ["incepu", "gsta"])
def test_forward_on_real_shapes_gives_logits_of_the_input_shape(model_type):
    torch.manual_seed(0)
    model = SimVP((10, 1, 32, 32), model_type=model_type).eval()
    x = torch.zeros(2, 10, 1, 32, 32)
    x[0, torch.arange(10), 0, 5, torch.arange(10) + 3] = 1  # a point moving right
    x[1, :, 0, 20, 20] = 1
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 10, 1, 32, 32) and torch.isfinite(y).all()
    assert not torch.allclose(y[0], y[1])


@pytest.mark.parametrize(
    "model_type,shape,hid_S,hid_T,N_S,N_T",
    [
        ("incepu", (10, 1, 32, 32), 64, 256, 4, 8),
        ("gsta", (10, 1, 32, 32), 64, 256, 4, 8),
        ("incepu", (10, 1, 32, 32), 8, 16, 2, 2),
        ("gsta", (6, 2, 16, 16), 6, 20, 3, 3),
        ("incepu", (4, 3, 8, 8), 12, 36, 1, 3),
    ],
)
def test_parameter_count_matches_the_architecture_formula(model_type, shape, hid_S, hid_T, N_S, N_T):
    with torch.device("meta"):
        model = SimVP(shape, hid_S, hid_T, N_S, N_T, model_type)
    formula = incepu_params if model_type == "incepu" else gsta_params
    assert count_parameters(model) == formula(shape[0], shape[1], hid_S, hid_T, N_S, N_T)


@pytest.mark.parametrize(
    "model_type,shape,sizes,millions",
    [
        ("incepu", (4, 2, 32, 32), (32, 256, 2, 8), 13.79),  # TaxiBJ
        ("gsta", (4, 2, 32, 32), (32, 256, 2, 8), 9.96),
        ("incepu", (12, 1, 32, 64), (32, 256, 2, 8), 14.67),  # WeatherBench 5.625 deg
        ("gsta", (12, 1, 32, 64), (32, 256, 2, 8), 12.76),
        ("gsta", (10, 1, 64, 64), (64, 512, 4, 8), 46.77),  # Moving MNIST, listed as 46.8M
    ],
)
def test_parameter_count_matches_openstl_model_zoo(model_type, shape, sizes, millions):
    """Parameter counts published in OpenSTL's benchmark tables (docs/en/model_zoos/video_benchmarks.md)."""
    with torch.device("meta"):
        model = SimVP(shape, *sizes, model_type)
    assert count_parameters(model) / 1e6 == pytest.approx(millions, abs=0.005)


def test_translator_mixes_time_and_the_skip_keeps_space():
    torch.manual_seed(0)
    model = SimVP((10, 1, 16, 16), 8, 16, 2, 2).eval()
    x = torch.zeros(1, 10, 1, 16, 16)
    x[0, -1, 0, 4, 4] = 1
    with torch.no_grad():
        base = model(x)
        moved = x.clone()
        moved[0, 0, 0, 9, 9] = 1  # change only the first input frame
        out = model(moved)
    assert (out[0, -1] - base[0, -1]).abs().max() > 1e-6  # the last output frame sees the first input frame


def test_prior_prob_sets_the_readout_bias():
    model = SimVP((10, 1, 16, 16), 8, 16, 2, 2, prior_prob=0.01)
    assert float(model.dec.readout.bias.detach()) == pytest.approx(math.log(0.01 / 0.99))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"in_shape": (10, 1, 30, 30)}, "frame size 30x30 is not divisible by the encoder's downsampling factor 4"),
        ({"in_shape": (10, 1, 32, 32), "N_S": 6, "hid_S": 16, "hid_T": 32}, None),
        ({"in_shape": (10, 1, 36, 36), "N_S": 6}, "not divisible by the encoder's downsampling factor 8"),
        ({"model_type": "swin"}, "unknown model_type 'swin'; valid: incepu, gsta"),
        ({"hid_S": 7}, "hid_S must be even"),
        ({"N_T": 1}, "N_T must be at least 2"),
        ({"hid_S": 2, "hid_T": 16}, r"T \* hid_S = 20 must be divisible by the Inception groups \(8\)"),
        ({"prior_prob": 1.0}, "prior_prob must be in"),
        ({"in_shape": (10, 1, 32)}, "in_shape must be"),
    ],
)
def test_bad_settings_are_clear_value_errors(kwargs, message):
    if message is None:
        with torch.device("meta"):
            SimVP(**kwargs)
        return
    with pytest.raises(ValueError, match=message):
        SimVP(**kwargs)


def test_wrong_input_shape_is_a_clear_error():
    model = SimVP((10, 1, 16, 16), 8, 16, 2, 2)
    with pytest.raises(ValueError, match=r"SimVP expects input of shape \(B, 10, 1, 16, 16\), got \(2, 10, 1, 32, 32\)"):
        model(torch.zeros(2, 10, 1, 32, 32))
