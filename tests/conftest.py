"""Test environment: CPU only, 8 fake devices, no network."""

import atexit
import os
import shutil
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TQDM_DISABLE", "1")
# The project's cache root (lakes, pretrained bases): one folder per test session,
# never the user's own cache.
os.environ["LEAD_JAX_CACHE"] = tempfile.mkdtemp(prefix="lead_jax_test_cache_")
atexit.register(shutil.rmtree, os.environ["LEAD_JAX_CACHE"], ignore_errors=True)
