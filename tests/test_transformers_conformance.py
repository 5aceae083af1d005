"""transformers' own generic tests, run against the AudioMosaic classes the way transformers tests its AST model.

`ModelTesterMixin` and `ConfigTester` run against `AudioMosaicModel`, `AudioMosaicForAudioClassification` and
`AudioMosaicForPreTraining`, and `SequenceFeatureExtractionTestMixin` against `AudioMosaicFeatureExtractor`, as
transformers' `tests/models/audio_spectrogram_transformer/test_modeling_audio_spectrogram_transformer.py` and
`test_feature_extraction_audio_spectrogram_transformer.py` do for AST: a tiny model tester, the same class attributes,
the same overridden tests (`test_model_get_set_embeddings`, `test_forward_signature`, the feature extractor's
`test_call` / `test_double_precision_pad`) and the same single skip (`test_inputs_embeds`). Not taken over from AST:
its `@slow` hub checkpoint tests and the feature extractor's `test_integration` (a hub data set; the reference parity
of the features is tested in tests/test_feature_extraction.py), its torchaudio-less variant (this extractor never uses
torchaudio) and `PipelineTesterMixin` (AST skips its audio-classification case; tests/test_auto_and_pipeline.py tests
the pipeline).

The mixins are not in the transformers wheel: `run_scripts/fetch_transformers_tests.py` (run by
`run_scripts/setup_env.sh`) takes them from the sdist of the installed transformers version into `.cache/`. Without
them, `test_generic_tests_are_fetched` and every test here fail with the command that fetches them.

Two adaptations, both as narrow as possible:

* The mixins recognise task heads by the in-tree class-name tables of the Auto classes (`MODEL_MAPPING_NAMES`, ...):
  a base model is skipped by `test_training`, an audio classifier gets `labels`. The AudioMosaic names are added to
  the tables of the Auto classes they are registered with (`modeling_audiomosaic/registration.py`) while the model
  tests run, as an in-tree model's names would be.
* The common inputs carry the frame-level `attention_mask` the feature extractor returns (AST's mask is per token, so
  its tester leaves the mask to the generic tests, which would build one of `seq_length` tokens).

`AudioMosaicForPreTraining` returns per-view outputs stacked on a leading view axis (`(num_views, batch, ...)`); the
generic hidden-state / attention checks read the trailing dimensions, so they apply to it unchanged.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import random
import unittest
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from torch import nn
from transformers.models.auto import modeling_auto
from transformers.testing_utils import require_torch, torch_device

from modeling_audiomosaic import (
    AudioMosaicConfig,
    AudioMosaicForAudioClassification,
    AudioMosaicForPreTraining,
    AudioMosaicModel,
)
from modeling_audiomosaic.feature_extraction import AudioMosaicFeatureExtractor

REPO = Path(__file__).resolve().parents[1]


def _load_fetch_script():
    """`run_scripts/fetch_transformers_tests.py` as a module (it owns the cache layout and the loader)."""
    path = REPO / "run_scripts" / "fetch_transformers_tests.py"
    spec = importlib.util.spec_from_file_location("fetch_transformers_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fetch_script = _load_fetch_script()
try:
    _package = fetch_script.load_generic_tests()
    modeling_common = importlib.import_module(f"{_package.__name__}.test_modeling_common")
    configuration_common = importlib.import_module(f"{_package.__name__}.test_configuration_common")
    sequence_fe_common = importlib.import_module(f"{_package.__name__}.test_sequence_feature_extraction_common")
    MISSING = None
except fetch_script.GenericTestsMissingError as err:
    MISSING = str(err)
except ModuleNotFoundError as err:  # a test-only dependency of the generic tests (e.g. parameterized)
    MISSING = (
        f"transformers' generic tests need the module {err.name!r}, which is not installed: install the test extras "
        "(pip install -e '.[dev]', or bash run_scripts/setup_env.sh)."
    )

if MISSING is None:
    ModelTesterMixin = modeling_common.ModelTesterMixin
    floats_tensor = modeling_common.floats_tensor
    ConfigTester = configuration_common.ConfigTester
    SequenceFeatureExtractionTestMixin = sequence_fe_common.SequenceFeatureExtractionTestMixin
else:  # plain bases: the test classes below keep only their own tests, and those fail in setUp with MISSING

    class ModelTesterMixin:  # noqa: D101 - placeholder
        pass

    class SequenceFeatureExtractionTestMixin:  # noqa: D101 - placeholder
        pass

    floats_tensor = ConfigTester = None


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: the models here are tiny, and on a busy machine the second thread's synchronisation made
    each forward ~40x slower (measured: 0.6 s vs 0.014 s for the model tester's config)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _require_generic_tests(case: unittest.TestCase) -> None:
    if MISSING is not None:
        case.fail(MISSING)


def test_generic_tests_are_fetched():
    """The generic tests are present for the installed transformers version (otherwise: how to fetch them)."""
    if MISSING is not None:
        pytest.fail(MISSING)
    manifest = _package.MANIFEST
    import transformers

    assert manifest["transformers_version"] == transformers.__version__
    from_sdist = {path for path, origin in manifest["files"].items() if origin == "sdist"}
    assert {"test_modeling_common.py", "test_configuration_common.py",
            "test_sequence_feature_extraction_common.py"} <= from_sdist


# ----------------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------------
# in-tree class-name tables of the Auto classes AudioMosaic is registered with (modeling_audiomosaic/registration.py)
AUTO_NAME_TABLES = {
    "MODEL_MAPPING_NAMES": AudioMosaicModel,
    "MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES": AudioMosaicForAudioClassification,
    "MODEL_FOR_PRETRAINING_MAPPING_NAMES": AudioMosaicForPreTraining,
}


class AudioMosaicModelTester:
    """Tiny AudioMosaic configs and inputs for the generic tests (the sizes of transformers' AST model tester, with
    non-overlapping patches: AudioMosaic's stride is its patch size)."""

    def __init__(
        self,
        parent: unittest.TestCase,
        batch_size: int = 13,
        patch_size: int = 2,
        max_length: int = 24,
        num_mel_bins: int = 16,
        is_training: bool = True,
        use_labels: bool = True,
        hidden_size: int = 32,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 4,
        intermediate_size: int = 37,
        hidden_act: str = "gelu",
        hidden_dropout_prob: float = 0.1,
        attention_probs_dropout_prob: float = 0.1,
        type_sequence_label_size: int = 10,
        initializer_range: float = 0.02,
        projection_hidden_size: int = 16,
        projection_dim: int = 8,
        attn_implementation: str = "eager",
    ) -> None:
        self.parent = parent
        self.batch_size = batch_size
        self.patch_size = patch_size
        self.max_length = max_length
        self.num_mel_bins = num_mel_bins
        self.is_training = is_training
        self.use_labels = use_labels
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.type_sequence_label_size = type_sequence_label_size
        self.initializer_range = initializer_range
        self.projection_hidden_size = projection_hidden_size
        self.projection_dim = projection_dim
        self.attn_implementation = attn_implementation
        # CLS + one token per (time, frequency) patch
        self.seq_length = 1 + (max_length // patch_size) * (num_mel_bins // patch_size)

    def get_config(self) -> AudioMosaicConfig:
        return AudioMosaicConfig(
            patch_size=self.patch_size,
            max_length=self.max_length,
            num_mel_bins=self.num_mel_bins,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act,
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
            initializer_range=self.initializer_range,
            projection_hidden_size=self.projection_hidden_size,
            projection_dim=self.projection_dim,
            attn_implementation=self.attn_implementation,
        )

    def prepare_config_and_inputs(self):
        input_values = floats_tensor([self.batch_size, self.max_length, self.num_mel_bins])
        labels = None
        if self.use_labels:
            labels = modeling_common.ids_tensor([self.batch_size], self.type_sequence_label_size)
        return self.get_config(), input_values, labels

    def create_and_check_model(self, config, input_values, labels) -> None:
        model = AudioMosaicModel(config=config).to(torch_device).eval()
        with torch.no_grad():
            result = model(input_values)
        self.parent.assertEqual(result.last_hidden_state.shape, (self.batch_size, self.seq_length, self.hidden_size))
        self.parent.assertEqual(result.pooler_output.shape, (self.batch_size, self.hidden_size))

    def prepare_config_and_inputs_for_common(self):
        config, input_values, _ = self.prepare_config_and_inputs()
        # the frame-level mask the feature extractor returns with padding="longest" (see the module docstring)
        attention_mask = torch.ones(self.batch_size, self.max_length, dtype=torch.long, device=torch_device)
        return config, {"input_values": input_values, "attention_mask": attention_mask}


@require_torch
class AudioMosaicModelTest(ModelTesterMixin, unittest.TestCase):
    """The generic model tests, as transformers runs them for AST (`ASTModelTest`)."""

    all_model_classes = (AudioMosaicModel, AudioMosaicForAudioClassification, AudioMosaicForPreTraining)
    fx_compatible = False
    test_resize_embeddings = False

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls._name_tables = [
            mock.patch.dict(getattr(modeling_auto, table), {AudioMosaicConfig.model_type: model_class.__name__})
            for table, model_class in AUTO_NAME_TABLES.items()
        ]
        for patcher in cls._name_tables:
            patcher.start()

    @classmethod
    def tearDownClass(cls) -> None:
        for patcher in reversed(cls._name_tables):
            patcher.stop()
        super().tearDownClass()

    def setUp(self) -> None:
        _require_generic_tests(self)
        self.model_tester = AudioMosaicModelTester(self)
        # num_attention_heads too: AudioMosaicConfig checks that the heads divide hidden_size (the default 12 does not)
        self.config_tester = ConfigTester(
            self, config_class=AudioMosaicConfig, has_text_modality=False, hidden_size=32, num_attention_heads=4
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    @unittest.skip(reason="AudioMosaic does not use inputs_embeds (nor does AST)")
    def test_inputs_embeds(self):
        pass

    def test_model_get_set_embeddings(self):
        """The patch embedding is the input embedding; there is no output embedding (as in AST's test)."""
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config)
            self.assertIsInstance(model.get_input_embeddings(), nn.Module)
            output_embeddings = model.get_output_embeddings()
            self.assertTrue(output_embeddings is None or isinstance(output_embeddings, nn.Linear))

    def test_forward_signature(self):
        """`input_values` is the first argument of every forward (as in AST's test)."""
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            arg_names = list(inspect.signature(model_class(config).forward).parameters)
            self.assertListEqual(arg_names[:1], ["input_values"])

    def test_model(self):
        self.model_tester.create_and_check_model(*self.model_tester.prepare_config_and_inputs())


# ----------------------------------------------------------------------------------------------------------------------
# Feature extractor
# ----------------------------------------------------------------------------------------------------------------------
global_rng = random.Random()


def floats_list(shape, scale=1.0, rng=None):
    """A `shape[0] x shape[1]` nested list of uniform floats in `[0, scale)` (the helper of transformers' audio feature
    extractor tests)."""
    rng = rng or global_rng
    return [[rng.random() * scale for _ in range(shape[1])] for _ in range(shape[0])]


class AudioMosaicFeatureExtractionTester:
    """Raw-waveform inputs for the sequence feature-extractor mixin (the values of transformers' AST tester)."""

    def __init__(
        self,
        parent: unittest.TestCase,
        batch_size: int = 7,
        min_seq_length: int = 400,
        max_seq_length: int = 2000,
        feature_size: int = 1,
        padding_value: float = 0.0,
        sampling_rate: int = 16000,
        return_attention_mask: bool = True,
        do_normalize: bool = True,
    ) -> None:
        self.parent = parent
        self.batch_size = batch_size
        self.min_seq_length = min_seq_length
        self.max_seq_length = max_seq_length
        self.seq_length_diff = (self.max_seq_length - self.min_seq_length) // (self.batch_size - 1)
        self.feature_size = feature_size
        self.padding_value = padding_value
        self.sampling_rate = sampling_rate
        self.return_attention_mask = return_attention_mask
        self.do_normalize = do_normalize

    def prepare_feat_extract_dict(self) -> dict:
        return {
            "feature_size": self.feature_size,
            "padding_value": self.padding_value,
            "sampling_rate": self.sampling_rate,
            "return_attention_mask": self.return_attention_mask,
            "do_normalize": self.do_normalize,
        }

    def prepare_inputs_for_common(self, equal_length=False, numpify=False):
        if equal_length:
            speech_inputs = floats_list((self.batch_size, self.max_seq_length))
        else:  # increasing lengths
            speech_inputs = [
                [value for row in floats_list((length, self.feature_size)) for value in row]
                for length in range(self.min_seq_length, self.max_seq_length, self.seq_length_diff)
            ]
        return [np.asarray(x) for x in speech_inputs] if numpify else speech_inputs


@require_torch
class AudioMosaicFeatureExtractionTest(SequenceFeatureExtractionTestMixin, unittest.TestCase):
    """The generic feature-extractor tests, as transformers runs them for AST (`ASTFeatureExtractionTest`)."""

    feature_extraction_class = AudioMosaicFeatureExtractor

    def setUp(self) -> None:
        _require_generic_tests(self)
        self.feat_extract_tester = AudioMosaicFeatureExtractionTester(self)

    def test_call(self):
        """Lists and numpy arrays, single clips and batches, give the same features."""
        feat_extract = self.feature_extraction_class(**self.feat_extract_tester.prepare_feat_extract_dict())
        speech_inputs = [floats_list((1, length))[0] for length in range(800, 1400, 200)]
        np_speech_inputs = [np.asarray(speech_input) for speech_input in speech_inputs]

        first = feat_extract(speech_inputs[0], return_tensors="np").input_values
        second = feat_extract(np_speech_inputs[0], return_tensors="np").input_values
        self.assertTrue(np.allclose(first, second, atol=1e-3))

        first = feat_extract(speech_inputs, padding=True, return_tensors="np").input_values
        second = feat_extract(np_speech_inputs, padding=True, return_tensors="np").input_values
        for row_1, row_2 in zip(first, second):
            self.assertTrue(np.allclose(row_1, row_2, atol=1e-3))

        speech_inputs = [floats_list((1, 800))[0] for _ in range(3)]  # a 2-D numpy array is a batch
        first = feat_extract(speech_inputs, return_tensors="np").input_values
        second = feat_extract(np.asarray(speech_inputs), return_tensors="np").input_values
        for row_1, row_2 in zip(first, second):
            self.assertTrue(np.allclose(row_1, row_2, atol=1e-3))

    def test_double_precision_pad(self):
        """`pad` returns float32 from float64 input, for numpy and torch outputs."""
        feature_extractor = self.feature_extraction_class(**self.feat_extract_tester.prepare_feat_extract_dict())
        np_speech_inputs = np.random.rand(100).astype(np.float64)
        for inputs in (np_speech_inputs.tolist(), np_speech_inputs):
            np_processed = feature_extractor.pad([{"input_values": inputs}], return_tensors="np")
            self.assertEqual(np_processed.input_values.dtype, np.float32)
            pt_processed = feature_extractor.pad([{"input_values": inputs}], return_tensors="pt")
            self.assertEqual(pt_processed.input_values.dtype, torch.float32)
