"""Recipe sections checked against their typed dataclasses: one-line errors naming the key and the type."""

import dataclasses
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

import pytest

from polyformer.apps.engine.config import TrainingConfig
from polyformer.apps.recipes.toml_config import apply_overrides
from polyformer.apps.recipes.typed_config import ConfigError, build_section, check_fields, check_value
from polyformer.apps.recipes.vision_classification import ImageDataSettings
from polyformer.vision.vit import ViTConfig

MODEL_EXTRA = {"preset": str, "init": str | None}
SECTIONS = [(TrainingConfig, "train"), (ImageDataSettings, "data"), (ViTConfig, "model")]


def _sample(annotation: Any) -> Any:
    """A valid value of a scalar annotation."""
    samples = {int: 1, float: 0.5, bool: True, str: "x"}
    if annotation not in samples:
        pytest.fail(f"no sample value for {annotation!r}; extend _sample")
    return samples[annotation]


def _wrong_values(annotation: Any) -> list[Any]:
    """Values a config could hold that do not match ``annotation`` (empty: nothing is wrong for it)."""
    if annotation is Any or annotation is object:
        return []
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [arg for arg in args if arg is not type(None)]
        if len(members) != 1:
            pytest.fail(f"no wrong values for the union {annotation!r}; extend _wrong_values")
        return _wrong_values(members[0])  # None is allowed, and no wrong value of the member is None
    scalars = {
        int: ["abc", 2.5, 3.0, True, [1]],
        float: ["abc", True, [0.5], {"a": 1.0}],
        bool: ["yes", "true", 1, 0.0],
        str: [["a"], 3, 0.5, False, {"a": "b"}],
    }
    if annotation in scalars:
        return scalars[annotation]
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return [{"a": 1}, "abc", [_wrong_values(args[0])[0]]]
        valid = [_sample(arg) for arg in args]
        return [
            {"a": 1},
            "abc",
            valid[:-1],  # one item short
            [*valid, valid[-1]],  # one item too many
            [*valid[:-1], _wrong_values(args[-1])[0]],  # a wrong item
        ]
    if origin is list:
        return [{"a": 1}, "abc", 3, [_sample(args[0]), _wrong_values(args[0])[0]]]
    if origin is dict:
        wrong = [["a"], "abc", 3]
        if args and args[1] is not Any:
            wrong.append({"k": _wrong_values(args[1])[0]})
        return wrong
    pytest.fail(f"no wrong values for {annotation!r}; extend _wrong_values")


def _wrong_cases():
    for cls, section in SECTIONS:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            for value in _wrong_values(hints[f.name]):
                yield pytest.param(cls, section, f.name, value, id=f"{section}.{f.name}={value!r}")


def _field_cases():
    for cls, section in SECTIONS:
        for f in dataclasses.fields(cls):
            yield pytest.param(cls, section, f, id=f"{section}.{f.name}")


def _message(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and "\r" not in message, message
    return message


def _check(cls: type, section: str, table: dict[str, Any]) -> Any:
    """``[model]`` is checked (preset + overrides); the other sections are built."""
    if cls is ViTConfig:
        return check_fields(cls, table, section, MODEL_EXTRA)
    return build_section(cls, table, section)


@pytest.mark.parametrize("cls,section,name,value", list(_wrong_cases()))
def test_every_field_rejects_a_wrong_type(cls, section, name, value):
    with pytest.raises(ConfigError) as excinfo:
        _check(cls, section, {name: value})
    message = _message(excinfo)
    assert re.match(rf"{re.escape(section)}\.{re.escape(name)}[\[:]", message), message
    assert "expected" in message


def test_every_field_has_wrong_values_unless_it_takes_anything():
    """Only fields typed Any (or a table of Any, which still rejects non-tables) escape the sweep."""
    for cls, _ in SECTIONS:
        for name, annotation in typing.get_type_hints(cls).items():
            if name in {f.name for f in dataclasses.fields(cls)} and annotation is not Any:
                assert _wrong_values(annotation), f"{cls.__name__}.{name}: {annotation!r}"


@pytest.mark.parametrize("cls,section,field", list(_field_cases()))
def test_every_default_is_accepted(cls, section, field):
    default = field.default_factory() if field.default is dataclasses.MISSING else field.default
    annotation = typing.get_type_hints(cls)[field.name]
    assert check_value(section, field.name, default, annotation) == default
    if isinstance(default, tuple):  # TOML gives a list
        assert check_value(section, field.name, list(default), annotation) == default


@pytest.mark.parametrize("cls,section", SECTIONS)
def test_defaults_written_as_toml_build_the_default_dataclass(cls, section):
    def as_toml(value):
        return list(value) if isinstance(value, tuple) else value

    default = cls()
    table = {f.name: as_toml(getattr(default, f.name)) for f in dataclasses.fields(cls)}
    table = {name: value for name, value in table.items() if value is not None}  # TOML has no None
    assert build_section(cls, {}, section) == default
    assert build_section(cls, table, section) == default


# --- the three mistakes that used to crash deep inside ---------------------------------------------


def _config(*overrides: str) -> dict[str, dict[str, Any]]:
    base = {"model": {"preset": "vit_nano_patch4_28"}, "data": {}, "train": {}}
    return apply_overrides(base, overrides)


def test_misspelt_model_key_suggests_the_field():
    config = _config("model.backnd=eager")
    with pytest.raises(ConfigError) as excinfo:
        check_fields(ViTConfig, config["model"], "model", MODEL_EXTRA)
    message = _message(excinfo)
    assert message.startswith("unknown key model.backnd; did you mean model.backend? known keys: ")
    known = message.split("known keys: ")[1].split(", ")
    assert {"backend", "preset", "init", "num_layers"} <= set(known)


def test_epochs_not_a_number():
    config = _config("train.epochs=abc")
    with pytest.raises(ConfigError) as excinfo:
        build_section(TrainingConfig, config["train"], "train")
    assert _message(excinfo) == "train.epochs: expected a number (float), got 'abc' (str)"


def test_crop_scale_needs_two_numbers():
    config = _config("data.crop_scale=[0.5]")
    with pytest.raises(ConfigError) as excinfo:
        build_section(ImageDataSettings, config["data"], "data")
    assert _message(excinfo).startswith("data.crop_scale: expected a list of 2 numbers, got [0.5]")


def test_model_integer_field_rejects_a_fraction():
    with pytest.raises(ConfigError) as excinfo:
        check_fields(ViTConfig, {"preset": "vit_nano_patch4_28", "num_layers": 2.5}, "model", MODEL_EXTRA)
    assert _message(excinfo).startswith("model.num_layers: expected an integer, got 2.5")


def test_unknown_key_suggestion_and_known_keys():
    with pytest.raises(ConfigError) as excinfo:
        build_section(TrainingConfig, {"lrr": 0.1}, "train")
    message = _message(excinfo)
    assert message.startswith("unknown key train.lrr; did you mean train.lr? known keys: ")
    assert message.split("known keys: ")[1].split(", ") == sorted(f.name for f in dataclasses.fields(TrainingConfig))


def test_unknown_key_without_a_close_match_lists_the_known_keys():
    with pytest.raises(ConfigError) as excinfo:
        build_section(ImageDataSettings, {"zzzzzz": 1}, "data")
    message = _message(excinfo)
    assert message.startswith("unknown key data.zzzzzz; known keys: ") and "did you mean" not in message


def test_several_unknown_keys_are_all_named():
    with pytest.raises(ConfigError) as excinfo:
        build_section(TrainingConfig, {"lrr": 0.1, "zzzzzz": 1}, "train")
    message = _message(excinfo)
    assert message.startswith("unknown keys train.lrr (did you mean train.lr?), train.zzzzzz; known keys: ")


def test_item_of_a_list_is_named():
    with pytest.raises(ConfigError) as excinfo:
        build_section(TrainingConfig, {"betas": [0.9, "x"]}, "train")
    assert _message(excinfo) == "train.betas[1]: expected a number (float), got 'x' (str)"


def test_model_init_and_preset_are_checked():
    with pytest.raises(ConfigError) as excinfo:
        check_fields(ViTConfig, {"preset": "vit_nano_patch4_28", "init": 3}, "model", MODEL_EXTRA)
    assert _message(excinfo).startswith("model.init: expected a string or None, got 3 (int)")
    with pytest.raises(ConfigError) as excinfo:
        check_fields(ViTConfig, {"preset": ["vit"]}, "model", MODEL_EXTRA)
    assert _message(excinfo).startswith("model.preset: expected a string, got ['vit'] (list)")


def test_wrong_bool_int_and_float_mixes():
    for table, start in [
        ({"batch_size": True}, "train.batch_size: expected an integer, got True (bool)"),
        ({"batch_size": 64.0}, "train.batch_size: expected an integer, got 64.0 (float)"),
        ({"quiet": 1}, "train.quiet: expected a boolean (true or false), got 1 (int)"),
        ({"lr": True}, "train.lr: expected a number (float), got True (bool)"),
        ({"max_steps": "ten"}, "train.max_steps: expected an integer or None, got 'ten' (str)"),
    ]:
        with pytest.raises(ConfigError) as excinfo:
            build_section(TrainingConfig, table, "train")
        assert _message(excinfo) == start


# --- correct values pass -------------------------------------------------------------------------------


def test_correct_values_build_the_dataclass():
    config = _config(
        "train.epochs=3", "train.max_steps=20", "train.betas=[0.9, 0.95]", "train.quiet=true", "train.extra={a = 1}",
        "data.crop_scale=[0.5, 1]", "data.augment=trivialaugment", "data.train_limit=100",
    )  # fmt: skip
    training = build_section(TrainingConfig, config["train"], "train")
    assert isinstance(training, TrainingConfig)
    assert training.epochs == 3.0 and isinstance(training.epochs, float)
    assert training.max_steps == 20 and training.betas == (0.9, 0.95) and training.quiet is True
    assert training.extra == {"a": 1} and training.warmup_steps is None
    data = build_section(ImageDataSettings, config["data"], "data")
    assert data.crop_scale == (0.5, 1.0) and all(isinstance(v, float) for v in data.crop_scale)
    assert data.augment == "trivialaugment" and data.train_limit == 100


def test_none_is_accepted_where_the_field_allows_it():
    training = build_section(TrainingConfig, {"max_steps": None, "clip_grad_norm": None}, "train")
    assert training.max_steps is None and training.clip_grad_norm is None
    with pytest.raises(ConfigError) as excinfo:
        build_section(TrainingConfig, {"lr": None}, "train")
    assert _message(excinfo) == "train.lr: expected a number (float), got None (NoneType)"


def test_model_fields_are_checked_and_converted():
    table = {"preset": "vit_nano_patch4_28", "image_mean": [0, 1, 0.5], "num_layers": 2, "layer_scale": 1}
    checked = check_fields(ViTConfig, table, "model", MODEL_EXTRA)
    assert checked == {**table, "image_mean": [0.0, 1.0, 0.5], "layer_scale": 1.0}
    assert isinstance(checked["layer_scale"], float)
    assert check_fields(ViTConfig, {}, "model") == {}


def test_check_value_scalars_and_containers():
    assert check_value("s", "f", 3, float) == 3.0
    assert check_value("s", "f", [1, 2], tuple[float, ...]) == (1.0, 2.0)
    assert check_value("s", "f", ["a", "b"], list[str]) == ["a", "b"]
    assert check_value("s", "f", {"k": [1]}, dict[str, Any]) == {"k": [1]}
    assert check_value("s", "f", object, Any) is object
    with pytest.raises(ConfigError, match=r"^s\.f\[1\]: expected a string, got 2 \(int\)$"):
        check_value("s", "f", ["a", 2], list[str])
    with pytest.raises(ConfigError, match=r"^s\.f: expected a list of numbers, got 'ab' \(str\)$"):
        check_value("s", "f", "ab", tuple[float, ...])
    with pytest.raises(TypeError, match="get_type_hints"):
        check_value("s", "f", 1, "int")


# --- the dataclass's own checks -------------------------------------------------------------------------


def test_post_init_error_becomes_one_line_config_error():
    with pytest.raises(ConfigError) as excinfo:
        build_section(TrainingConfig, {"lr": -1}, "train")
    message = _message(excinfo)
    assert message.startswith("train: invalid training config: lr must be positive")
    assert isinstance(excinfo.value.__cause__, ValueError)
    with pytest.raises(ConfigError) as excinfo:
        build_section(ImageDataSettings, {"val_fraction": 1.5}, "data")
    assert _message(excinfo).startswith("data: data.val_fraction must be in (0, 1)")


@dataclass
class _Strict:
    size: int
    name: str = "a"

    def __post_init__(self) -> None:
        if self.size > 10:
            raise ValueError("size is too big:\nkeep it at most 10")


def test_multiline_errors_and_missing_keys():
    with pytest.raises(ConfigError) as excinfo:
        build_section(_Strict, {"size": 11}, "toy")
    assert _message(excinfo) == "toy: size is too big: keep it at most 10"
    with pytest.raises(ConfigError) as excinfo:
        build_section(_Strict, {"name": "b"}, "toy")
    assert _message(excinfo) == "missing key toy.size (an integer)"
    assert build_section(_Strict, {"size": 3}, "toy") == _Strict(3)
    assert "\n" not in str(ConfigError("two\nlines"))
