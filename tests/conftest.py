"""Shared test configuration.

Strict rank promotion catches accidental broadcasting. 64-bit mode stays off globally:
tests that need float64 use the ``x64`` fixture (``jax.enable_x64`` as a context).
"""

import os

import jax
import pytest
from hypothesis import HealthCheck, settings

jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile(
    "jaxfc",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("jaxfc")


@pytest.fixture
def x64():
    """Run the test body in JAX 64-bit mode at the highest matmul precision."""
    with jax.enable_x64(True), jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(autouse=True, scope="session")
def compilation_cache_in_tmp(tmp_path_factory):
    """`jaxfc` commands keep compiled programs on disk: in pytest's tmp, not the home."""
    os.environ.setdefault("JAXFC_CACHE_DIR", str(tmp_path_factory.mktemp("xla-cache")))


@pytest.fixture
def compiled_programs():
    """The names of the programs XLA compiles while the test runs (a list, filled live)."""
    names = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            names.append(kwargs.get("fun_name", "?"))

    jax.monitoring.register_event_duration_secs_listener(listener)
    yield names
    jax.monitoring.unregister_event_duration_listener(listener)
