"""AudioMosaic for transformers: contrastive masked audio representation learning, transformers-native.

Install torch first (a CPU or CUDA build of your choice, >= 2.1); this package never forces a newer torch:

    pip install torch==2.13.0
    pip install -e ".[dev,train]"

Note: timm (used only by the parity tests as an independent reference) depends on torchvision, which would pull a
different torch build; install it with ``pip install --no-deps timm==1.0.31`` (run_scripts/setup_env.sh does).
"""

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
README = (ROOT / "README.md").read_text(encoding="utf-8") if (ROOT / "README.md").exists() else ""

extras = {
    "dev": ["pytest>=8", "scikit-learn>=1.3", "soundfile>=0.12", "parameterized>=0.9", "ruff==0.17.6"],
    "train": ["accelerate>=1.15,<2", "datasets>=5.2,<6", "tensorboard>=2.15", "pyyaml>=6", "matplotlib>=3.8"],
    "llm": ["peft>=0.21,<0.22", "accelerate>=1.15,<2", "gguf>=0.10"],
    "bench": ["onnxruntime>=1.18", "onnx>=1.15", "matplotlib>=3.8"],
    "onnx": ["onnx>=1.15", "onnxscript>=0.5", "onnxruntime>=1.18"],
    "eval": ["evaluate>=0.4,<0.5", "scikit-learn>=1.3"],
    # optional faster decoder of FLAC and PCM WAV bytes (feature_extraction/audio_io.py; soundfile is the fallback)
    "audio": ["miniaudio>=1.59"],
}
extras["all"] = sorted({req for reqs in extras.values() for req in reqs})

setup(
    name="audiomosaic-transformers",
    version="0.1.0",
    description="AudioMosaic (contrastive masked audio representation learning) for Hugging Face transformers",
    long_description=README,
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # the `feature_extraction/` folder is installed inside the model's namespace, as
    # `modeling_audiomosaic.feature_extraction`: a generic top-level name would shadow (or be shadowed by) any other
    # project's or a user's own `feature_extraction` module
    packages=["modeling_audiomosaic", "modeling_audiomosaic.metrics", "modeling_audiomosaic.feature_extraction",
              "modeling_audiomosaic.feature_extraction.offline_corpus"],
    package_dir={"modeling_audiomosaic.feature_extraction": "feature_extraction"},
    # the metrics are local `evaluate` modules (one folder each), loaded offline with evaluate.load(<folder>)
    package_data={"modeling_audiomosaic": ["labels/*.csv", "metrics/*/*.py", "metrics/*/*.md"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.1",  # deliberately unpinned above: keep the build you installed (CPU wheels, CUDA builds, ...)
        "transformers>=5.23,<6",
        "safetensors>=0.8",
        "huggingface_hub>=1.0",
        "numpy>=1.24",
        "soundfile>=0.12",
        "soxr>=0.3",
        "scipy>=1.10",
        "tqdm>=4.60",
    ],
    extras_require=extras,
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Multimedia :: Sound/Audio :: Analysis",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
