"""The generic recipe loader: every recipe is a dataclass + a TOML file + ``key=value``
overrides, with one-line errors for unknown keys, wrong types and missing files."""

from dataclasses import dataclass, field
from typing import Any

import pytest

from polyformer.apps.engine import TrainingConfig
from polyformer.apps.recipes.bio_finetune import DnaFinetuneRecipe, load_finetune_recipe
from polyformer.apps.recipes.bio_pretrain import DnaPretrainRecipe, load_pretrain_recipe
from polyformer.apps.recipes.recipe_loader import load_recipe_file, recipe_to_dict
from polyformer.apps.recipes.speech_asr import AsrRecipe, load_asr_recipe
from polyformer.apps.recipes.speech_ctc import CtcRecipe, load_ctc_recipe
from polyformer.apps.recipes.speech_wav2vec2 import PretrainRecipe
from polyformer.apps.recipes.speech_wav2vec2 import load_pretrain_recipe as load_wav2vec2_pretrain_recipe
from polyformer.apps.recipes.text_classification import TextClassificationRecipe, load_classification_recipe
from polyformer.apps.recipes.text_lm import LMRecipe, load_lm_recipe
from polyformer.apps.recipes.text_translation import TranslationRecipe, load_translation_recipe
from polyformer.apps.recipes.toml_config import list_recipe_configs
from polyformer.apps.recipes.typed_config import ConfigError
from polyformer.apps.recipes.vision_classification import VisionClassificationRecipe, load_recipe
from polyformer.apps.recipes.vision_detection import DetectionRecipe, load_detection_recipe


@dataclass
class DataSettings:
    path: str = "data.csv"  # where the data is
    limit: int = 0  # items used; 0 = all


@dataclass
class ToyRecipe:
    name: str
    model: dict[str, Any] = field(default_factory=lambda: {"preset": "tiny"})
    data: DataSettings = field(default_factory=DataSettings)
    train: TrainingConfig = field(default_factory=TrainingConfig)


@pytest.fixture
def toy_file(tmp_path):
    path = tmp_path / "toy.toml"
    path.write_text('[model]\npreset = "small"\nwidth = 64\n\n[data]\nlimit = 10\n\n[train]\nlr = 0.01\n')
    return path


def test_a_file_with_overrides_builds_the_recipe(toy_file):
    recipe = load_recipe_file(ToyRecipe, toy_file, ["train.epochs=3", "data.path=other.csv", "model.width=32"])
    assert recipe.name == "toy" and recipe.model == {"preset": "small", "width": 32}
    assert recipe.data == DataSettings("other.csv", 10)
    assert recipe.train.lr == 0.01 and recipe.train.epochs == 3.0
    assert recipe_to_dict(recipe)["data"] == {"path": "other.csv", "limit": 10}


def test_sections_the_file_leaves_out_get_the_recipe_defaults(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("[train]\nmax_steps = 5\n")
    recipe = load_recipe_file(ToyRecipe, path)
    assert recipe.model == {"preset": "tiny"} and recipe.data == DataSettings() and recipe.train.max_steps == 5


def _one_line_error(error_type, *args, **kwargs):
    with pytest.raises(error_type) as caught:
        load_recipe_file(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_unknown_key_is_one_line_with_a_suggestion(toy_file):
    message = _one_line_error(ConfigError, ToyRecipe, toy_file, ["train.epohcs=3"])
    assert message.startswith("unknown key train.epohcs; did you mean train.epochs? known keys:")
    message = _one_line_error(ConfigError, ToyRecipe, toy_file, ["data.limt=3"])
    assert message.startswith("unknown key data.limt; did you mean data.limit? known keys: limit, path")


def test_wrong_type_is_one_line(toy_file):
    message = _one_line_error(ConfigError, ToyRecipe, toy_file, ["train.epochs=abc"])
    assert message == "train.epochs: expected a number (float), got 'abc' (str)"
    message = _one_line_error(ConfigError, ToyRecipe, toy_file, ["data.limit=2.5"])
    assert message == "data.limit: expected an integer, got 2.5 (float)"


def test_missing_file_is_one_line():
    message = _one_line_error(FileNotFoundError, ToyRecipe, "no_such_recipe")
    assert message.startswith("recipe config 'no_such_recipe' not found: give a TOML file or one of [")


def test_unknown_section_and_derived_model_keys(toy_file, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[trian]\nlr = 1\n")
    message = _one_line_error(ConfigError, ToyRecipe, bad)
    assert message == "recipe config " + str(bad) + ": unknown section(s) ['trian']; expected [model], [data], [train]"
    message = _one_line_error(ConfigError, ToyRecipe, toy_file, ["model.vocab_size=9"],
                              derived={"vocab_size": "the tokenizer"})  # fmt: skip
    assert message == "model.vocab_size comes from the tokenizer; remove it"


def test_the_model_check_sees_the_table(toy_file):
    def check(table):
        if table.get("width", 0) > 100:
            raise ConfigError(f"model.width: at most 100, got {table['width']}")
        return table

    assert load_recipe_file(ToyRecipe, toy_file, check_model=check).model["width"] == 64
    assert _one_line_error(ConfigError, ToyRecipe, toy_file, ["model.width=500"], check_model=check) == (
        "model.width: at most 100, got 500"
    )


LOADERS = {  # tried in this order: a recipe with a free-form [model] table (text classification) comes late
    CtcRecipe: load_ctc_recipe, PretrainRecipe: load_wav2vec2_pretrain_recipe, VisionClassificationRecipe: load_recipe,
    TextClassificationRecipe: load_classification_recipe,
    LMRecipe: load_lm_recipe, TranslationRecipe: load_translation_recipe,
    DnaPretrainRecipe: load_pretrain_recipe, DnaFinetuneRecipe: load_finetune_recipe,
    DetectionRecipe: load_detection_recipe, AsrRecipe: load_asr_recipe,
}  # fmt: skip


def test_every_shipped_config_loads_with_its_recipe():
    recipes = {}
    for name in list_recipe_configs():
        finetune = name in ("image_folder_finetune", "detection_finetune")
        overrides = ["model.init=run/model"] if finetune else []  # set by --init
        for loader in LOADERS.values():
            try:
                recipes[name] = loader(name, overrides)
                break
            except ConfigError:
                continue
    assert sorted(recipes) == list_recipe_configs()
    assert {type(recipe) for recipe in recipes.values()} == set(LOADERS)
    for recipe in recipes.values():
        assert recipe_to_dict(recipe)["train"] == recipe.train.to_dict()
