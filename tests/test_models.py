"""MSA-3DCNN, heads, losses and model files."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from rhoprop.errors import IncompatibleModelError, SettingsError
from rhoprop.grid.settings import StandardizeSettings
from rhoprop.models import (
    MODEL_SIZES,
    ModelBundle,
    TaskSpec,
    TaskWeighting,
    build_model,
    load_model,
    masked_loss,
    model_config,
    save_model,
)
from rhoprop.models.blocks import CircularConv3d, circular_pad

pytestmark = pytest.mark.usefixtures("one_thread")

TASKS = (
    TaskSpec("band_gap", "regression", "eV"),
    TaskSpec("is_metal", "binary", classes=("no", "yes")),
    TaskSpec("crystal_system", "multiclass", classes=("cubic", "hexagonal", "tetragonal")),
)


def _inputs(batch: int, channels: int, n: int, side: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, n, n, n, generator=g)
    s = torch.randn(batch, side, generator=g) * 3 + 5 if side else None
    return x, s


@pytest.mark.parametrize("size", sorted(MODEL_SIZES))
def test_every_size_keeps_batch_has_no_nan_and_trains_every_parameter(size: str) -> None:
    torch.manual_seed(0)
    model = build_model(size, TASKS, in_channels=2, side_features=6)
    n = max(8, 2 * model.config.total_stride)
    x, side = _inputs(3, 2, n, 6)
    out = model(x, side)
    assert out["band_gap"].shape == (3,)
    assert out["is_metal"].shape == (3,)
    assert out["crystal_system"].shape == (3, 3)
    loss = sum(o.float().pow(2).mean() for o in out.values())
    assert torch.isfinite(loss)
    loss.backward()
    no_grad = [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert no_grad == []
    zero_grad = [name for name, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert zero_grad == []


def test_unknown_size_lists_the_valid_ones() -> None:
    with pytest.raises(SettingsError, match="valid sizes are.*'default'.*'tiny'"):
        build_model("medium", TASKS)


def test_bad_config_value_names_the_field() -> None:
    with pytest.raises(SettingsError, match="dropout"):
        model_config("tiny", dropout=1.5)
    with pytest.raises(SettingsError, match="depths"):
        model_config("tiny", depths=(1,))


def test_wrong_input_shape_says_what_was_expected() -> None:
    model = build_model("tiny", TASKS, in_channels=2)
    with pytest.raises(SettingsError, match=r"\(B, 2, n, n, n\)"):
        model(torch.zeros(1, 1, 8, 8, 8))


def test_dilated_fast_path_equals_pytorch_dilated_circular_conv() -> None:
    torch.manual_seed(0)
    conv = CircularConv3d(3, 4, 3, dilation=2, bias=True)
    x = torch.randn(2, 3, 8, 12, 6)
    ref = F.conv3d(F.pad(x, (2,) * 6, mode="circular"), conv.weight, conv.bias, dilation=2)
    assert torch.allclose(conv(x), ref, atol=1e-5)
    odd = torch.randn(1, 3, 7, 7, 7)  # 7 % 2 != 0: the generic path
    ref = F.conv3d(F.pad(odd, (2,) * 6, mode="circular"), conv.weight, conv.bias, dilation=2)
    assert torch.allclose(conv(odd), ref, atol=1e-5)


def test_circular_pad_wraps_periodically_even_beyond_the_grid() -> None:
    x = torch.arange(3.0).reshape(1, 1, 3, 1, 1).expand(1, 1, 3, 3, 3)
    padded = circular_pad(x, 4)  # pad > n wraps more than once
    assert padded.shape == (1, 1, 11, 11, 11)
    expected = torch.tensor([(i - 4) % 3 for i in range(11)], dtype=torch.float32)
    assert torch.equal(padded[0, 0, :, 0, 0], expected)


def _predict(model: torch.nn.Module, x: torch.Tensor, side: torch.Tensor | None) -> torch.Tensor:
    out = model(x, side)
    return torch.cat([out["band_gap"][:, None], out["is_metal"][:, None], out["crystal_system"]], dim=1)


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_roll_by_multiples_of_total_stride_leaves_prediction_unchanged(size: str) -> None:
    torch.manual_seed(1)
    model = build_model(size, TASKS, in_channels=1, side_features=6).eval()
    s = model.config.total_stride
    x, side = _inputs(2, 1, 2 * s if s >= 8 else 16, 6)
    with torch.no_grad():
        ref = _predict(model, x, side)
        for shift in [(s, 0, 0), (0, 2 * s, s), (-s, s, -s)]:
            rolled = torch.roll(x, shifts=shift, dims=(2, 3, 4))
            assert torch.allclose(_predict(model, rolled, side), ref, atol=1e-5, rtol=1e-4), shift


def test_stride_one_model_is_invariant_to_every_roll() -> None:
    torch.manual_seed(2)
    model = build_model("tiny", TASKS, widths=(8,), depths=(2,)).eval()
    assert model.config.total_stride == 1
    x, _ = _inputs(2, 1, 10, 0)
    with torch.no_grad():
        ref = _predict(model, x, None)
        for shift in [(1, 0, 0), (3, 7, 2), (-1, -4, 5)]:
            out = _predict(model, torch.roll(x, shifts=shift, dims=(2, 3, 4)), None)
            assert torch.allclose(out, ref, atol=1e-5, rtol=1e-4), shift


def test_roll_incompatible_with_stride_changes_prediction() -> None:
    """The invariance above is a property of the stride, not of a test that cannot fail."""
    torch.manual_seed(3)
    model = build_model("tiny", TASKS).eval()
    assert model.config.total_stride == 2
    x, _ = _inputs(1, 1, 16, 0)
    with torch.no_grad():
        diff = (_predict(model, torch.roll(x, 1, dims=2), None) - _predict(model, x, None)).abs().max()
    assert diff > 1e-6


def test_masked_loss_ignores_missing_labels() -> None:
    task = TASKS[0]
    out = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    y = torch.tensor([1.5, float("nan"), 2.0, float("nan")])
    loss, n = masked_loss(task, out, y)
    assert n == 2
    assert loss.item() == pytest.approx(((1 - 1.5) ** 2 + (3 - 2) ** 2) / 2)
    loss.backward()
    assert torch.isfinite(out.grad).all()
    assert out.grad[1] == 0 and out.grad[3] == 0


def test_batch_without_labels_adds_exactly_zero_with_finite_gradients() -> None:
    for task, out in [
        (TASKS[0], torch.randn(3, requires_grad=True)),
        (TASKS[1], torch.randn(3, requires_grad=True)),
        (TASKS[2], torch.randn(3, 3, requires_grad=True)),
    ]:
        loss, n = masked_loss(task, out, torch.full((3,), float("nan")))
        assert n == 0 and loss.item() == 0.0
        loss.backward()
        assert torch.equal(out.grad, torch.zeros_like(out))


def test_classification_losses_are_cross_entropies() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    y = torch.tensor([0.0, 2.0])
    loss, _ = masked_loss(TASKS[2], logits, y)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, y.long()).item())
    blog = torch.tensor([0.3, -2.0])
    loss, _ = masked_loss(TASKS[1], blog, torch.tensor([1.0, float("nan")]))
    assert loss.item() == pytest.approx(F.softplus(-torch.tensor(0.3)).item(), rel=1e-6)


def test_uncertainty_weighting_ignores_tasks_absent_from_batch() -> None:
    weighting = TaskWeighting(TASKS, "uncertainty")
    losses = torch.tensor([2.0, 0.0, 1.0])
    present = torch.tensor([True, False, True])
    total = weighting(losses, present)
    assert total.item() == pytest.approx(0.5 * 2.0 + 1.0 * 1.0)  # log_var = 0: 1/2 regression, 1 class
    total.backward()
    grad = weighting.log_var.grad
    assert grad[1] == 0
    assert grad[0] == pytest.approx(-0.5 * 2.0 + 0.5)
    equal = TaskWeighting(TASKS, "equal")
    assert equal(losses, present).item() == pytest.approx(3.0)
    with pytest.raises(SettingsError, match="equal"):
        TaskWeighting(TASKS, "gradnorm")


def test_decode_unstandardizes_regression_and_gives_probabilities() -> None:
    model = build_model("tiny", TASKS).eval()
    model.target_norm.fit(torch.tensor([[1.0, 0, 0], [3.0, 1, 2], [float("nan"), 1, 1]]), [True, False, False])
    assert model.target_norm.mean.tolist() == [2.0, 0.0, 0.0]
    out = {"band_gap": torch.tensor([0.0, 1.0]), "is_metal": torch.tensor([0.0, 100.0]),
           "crystal_system": torch.zeros(2, 3)}
    dec = model.decode(out)
    assert dec["band_gap"].tolist() == pytest.approx([2.0, 3.0])
    assert dec["is_metal"].tolist() == pytest.approx([0.5, 1.0])
    assert torch.allclose(dec["crystal_system"].sum(dim=1), torch.ones(2))


def _bundle() -> ModelBundle:
    torch.manual_seed(4)
    model = build_model("tiny", TASKS, in_channels=1, side_features=6).eval()
    model.target_norm.fit(torch.tensor([[1.0, 0, 0], [5.0, 1, 2]]), [True, False, False])
    model.side_norm.fit(torch.tensor([[3.0, 4, 5, 90, 90, 90], [4.0, 4, 6, 90, 90, 120]]))
    settings = StandardizeSettings(mode="cell", n=8)
    return ModelBundle(model=model, standardize=settings, training={"dataset": "x", "code": "gpaw"})


def test_saved_model_loads_and_predicts_identically(tmp_path) -> None:
    bundle = _bundle()
    save_model(tmp_path / "model", bundle)
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["class"] == "MSA3DCNN" and meta["targets"][0]["unit"] == "eV"
    assert meta["targets"][0]["mean"] == pytest.approx(3.0)
    loaded = load_model(tmp_path / "model")
    assert loaded.standardize == bundle.standardize
    assert loaded.training["code"] == "gpaw"
    x, side = _inputs(2, 1, 8, 6)
    with torch.no_grad():
        assert torch.equal(_predict(loaded.model, x, side), _predict(bundle.model, x, side))


def test_loading_refuses_other_versions_and_broken_weights(tmp_path) -> None:
    path = save_model(tmp_path / "model", _bundle())
    meta_path = path / "model.json"
    good = json.loads(meta_path.read_text())
    for key, value, match in [
        ("model_version", 99, "version 99"),
        ("format_version", 0, "format"),
        ("class", "ResNet", "unknown model class"),
        ("standardize", {**good["standardize"], "version": 0}, "standardized by version 0"),
    ]:
        meta_path.write_text(json.dumps({**good, key: value}))
        with pytest.raises(IncompatibleModelError, match=match):
            load_model(path)
    meta_path.write_text(json.dumps({**good, "config": {**good["config"], "embed_dim": 16}}))
    with pytest.raises(IncompatibleModelError, match="wrong shape"):
        load_model(path)
    with pytest.raises(IncompatibleModelError, match="not a rhoprop model directory"):
        load_model(tmp_path)


def test_damaged_model_files_are_refused_with_what_is_wrong(tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    path = save_model(tmp_path / "model", _bundle())
    weights = path / "model.safetensors"
    good_weights = weights.read_bytes()
    weights.write_bytes(good_weights[: len(good_weights) // 3])
    with pytest.raises(IncompatibleModelError, match="cannot read the weights .*truncated or damaged"):
        load_model(path)
    weights.write_bytes(good_weights)
    state = load_file(str(weights))
    name = sorted(state)[0]
    state[name] = state[name].clone().fill_(float("nan"))
    save_file(state, str(weights))
    with pytest.raises(IncompatibleModelError, match=f"NaN or inf in 1 tensor.*{name}"):
        load_model(path)
    weights.write_bytes(good_weights)
    meta_path = path / "model.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({k: v for k, v in meta.items() if k != "targets"}))
    with pytest.raises(IncompatibleModelError, match="targets, config or standardize entry is missing"):
        load_model(path)


def test_standardize_mismatch_is_refused_with_the_differing_fields() -> None:
    bundle = _bundle()
    bundle.check_standardize(StandardizeSettings(mode="cell", n=8))
    with pytest.raises(IncompatibleModelError, match=r"n: model 8 vs data 16.*transform"):
        bundle.check_standardize(StandardizeSettings(mode="cell", n=16, transform="none"))


def test_a_model_trained_on_older_density_invariants_loads_with_a_warning(tmp_path) -> None:
    import warnings

    from rhoprop.models.invariants import INVARIANTS_VERSION

    with_features = build_model("tiny", TASKS, extra_features=5)
    with_features.extra_norm.fit(torch.randn(4, 5))
    settings = StandardizeSettings(mode="cube", n=8, edge=5.0)
    for name, model in [("plain", build_model("tiny", TASKS)), ("features", with_features)]:
        model.target_norm.fit(torch.tensor([[1.0, 0, 0], [5.0, 1, 2]]))
        path = save_model(tmp_path / name, ModelBundle(model=model, standardize=settings))
        meta = json.loads((path / "model.json").read_text())
        assert meta["invariants_version"] == INVARIANTS_VERSION
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            load_model(path)  # the current definitions: no warning
        del meta["invariants_version"]  # as written before the version was recorded
        (path / "model.json").write_text(json.dumps(meta))
        if name == "plain":  # reads no invariants: nothing to warn about
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                load_model(path)
        else:
            with pytest.warns(UserWarning, match="density invariants of version 1.*retrain"):
                load_model(path)


def test_the_wide_path_can_skip_targets_and_older_files_keep_it_for_every_target(tmp_path) -> None:
    model = build_model("tiny", TASKS, extra_features=5)
    assert model.extra_linear is not None
    assert set(model.extra_linear) == {"band_gap", "is_metal", "crystal_system"}
    skipping = build_model("tiny", TASKS, extra_features=5, extra_linear_skip=("band_gap",))
    assert skipping.extra_linear is not None
    assert set(skipping.extra_linear) == {"is_metal", "crystal_system"}
    skipping.extra_norm.fit(torch.randn(4, 5))
    skipping.target_norm.fit(torch.tensor([[1.0, 0, 0], [5.0, 1, 2]]))
    path = save_model(tmp_path / "m", ModelBundle(model=skipping, standardize=StandardizeSettings(n=8)))
    assert set(load_model(path).model.extra_linear) == {"is_metal", "crystal_system"}
    # a file written before the skip existed had the path for every target and loads as such
    meta = json.loads((path / "model.json").read_text())
    del meta["config"]["extra_linear_skip"]
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(IncompatibleModelError, match="missing"):
        load_model(path)  # its weights lack band_gap's path: the upgrade did not invent a skip
