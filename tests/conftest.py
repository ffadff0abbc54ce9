import pytest


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """The tiny synthetic preset (3 scenes), generated once per test session."""
    from nre.data.synth import generate

    root = tmp_path_factory.mktemp("synth_tiny")
    generate(root, "tiny", seed=0)
    return root
